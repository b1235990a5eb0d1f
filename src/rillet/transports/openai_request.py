"""The request body of `POST /v1/chat/completions` (PROTOCOL.md section 5), parsed and turned into
the chat core's terms.

`parse_request` validates the OpenAI chat-completions body (unknown sampling parameters are
accepted and ignored) and says what is wrong as an `InvalidFrameError`; `messages_of` and
`client_tools_of` translate the conversation and the client's `tools`. Only text content is
accepted: an image or audio part is refused, not silently dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_ai.tools import ToolDefinition

from rillet.errors import InvalidFrameError
from rillet.events import Mode
from rillet.transports.conversation import ChatMessage, ToolCall

TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"
"""Tool names OpenAI accepts, and so every provider behind Rillet."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class TextContent(_Body):
    type: Literal["text"]
    text: str


class RefusalContent(_Body):
    type: Literal["refusal"]
    refusal: str


Content = str | list[TextContent]


class FunctionCall(_Body):
    name: str
    arguments: str = ""


class ToolCallParam(_Body):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Body):
    role: Literal["system", "developer"]
    content: Content


class UserMessage(_Body):
    role: Literal["user"]
    content: Content


class AssistantMessage(_Body):
    role: Literal["assistant"]
    content: str | list[TextContent | RefusalContent] | None = None
    tool_calls: list[ToolCallParam] | None = None


class ToolMessage(_Body):
    role: Literal["tool"]
    tool_call_id: str
    content: Content


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")
]


class FunctionParam(_Body):
    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolParam(_Body):
    type: Literal["function"]
    function: FunctionParam


class StreamOptions(_Body):
    include_usage: bool = False


class ChatCompletionRequest(_Body):
    """The fields Rillet reads; sampling parameters (`temperature`, ...) are ignored."""

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[ToolParam] | None = None
    tool_choice: Any = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    n: int | None = Field(default=None, ge=1, le=1)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def metadata_value(self, key: str) -> str | None:
        return (self.metadata or {}).get(key) or None


def parse_request(raw: object) -> ChatCompletionRequest:
    """Validate a request body; raises `InvalidFrameError` naming each bad field."""
    try:
        return ChatCompletionRequest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise InvalidFrameError(f"invalid request: {problems}") from exc


def parse_mode(value: str | None) -> Mode:
    if value is None or value == "agent":
        return "agent"
    if value == "ask":
        return "ask"
    raise InvalidFrameError(f"unknown mode {value!r}; expected 'ask' or 'agent'")


def messages_of(request: ChatCompletionRequest) -> list[ChatMessage]:
    """The conversation in the chat core's terms."""
    out: list[ChatMessage] = []
    for message in request.messages:
        if isinstance(message, SystemMessage):
            out.append(ChatMessage(role="system", text=_text(message.content)))
        elif isinstance(message, UserMessage):
            out.append(ChatMessage(role="user", text=_text(message.content)))
        elif isinstance(message, AssistantMessage):
            calls = tuple(
                ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
                for call in message.tool_calls or []
            )
            out.append(ChatMessage(role="assistant", text=_text(message.content), tool_calls=calls))
        else:
            out.append(
                ChatMessage(
                    role="tool", text=_text(message.content), tool_call_id=message.tool_call_id
                )
            )
    return out


def client_tools_of(request: ChatCompletionRequest) -> list[ToolDefinition]:
    """The client's function tools (none when `tool_choice` is `"none"`).

    Raises:
        InvalidFrameError: two tools share a name.
    """
    if request.tool_choice == "none" or not request.tools:
        return []
    names = [tool.function.name for tool in request.tools]
    if len(set(names)) != len(names):
        raise InvalidFrameError("tools: every tool needs its own name")
    return [
        ToolDefinition(
            name=tool.function.name,
            description=tool.function.description,
            parameters_json_schema=tool.function.parameters or {"type": "object", "properties": {}},
            strict=tool.function.strict,
        )
        for tool in request.tools
    ]


def _text(content: str | list[TextContent] | list[TextContent | RefusalContent] | None) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, TextContent))
