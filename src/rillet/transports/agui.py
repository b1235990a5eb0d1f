"""AG-UI 1.0 (`POST /v1/agui`): `RunAgentInput` in, run events encoded as AG-UI events out.

`parse_input` validates the camelCase `RunAgentInput` (`threadId`, `runId`, `messages`, `tools`,
`context`, `state`, `forwardedProps`, `protocolVersion`) and `messages_of` turns its messages into
the chat core's terms (text content only). `AguiEncoder.encode` is a pure function of the run's
events: `RUN_STARTED` first; answer text as one assistant message named by the run's
`message_id` (`TEXT_MESSAGE_START`/`CONTENT`/`END`, reopened after tool calls, which the client
appends to the same message); reasoning as `REASONING_*`; every tool call as
`TOOL_CALL_START`/`ARGS`/`END` with that message as parent, and a server tool's result as
`TOOL_CALL_RESULT`; then `RUN_FINISHED`, whose outcome names the client tool calls left pending,
or `RUN_ERROR`. Outcomes are only sent to clients that declared protocol 1.0 or later.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_ai.tools import ToolDefinition

from rillet.errors import InvalidFrameError
from rillet.events import (
    ErrorEvent,
    ReasoningDeltaEvent,
    RunEvent,
    RunFinishedEvent,
    RunStartedEvent,
    TextDeltaEvent,
    ToolFinishedEvent,
    ToolStartedEvent,
)
from rillet.transports.conversation import ChatMessage, ToolCall

PROTOCOL_VERSION = "1.0"
"""The AG-UI protocol version Rillet speaks (declared in `RUN_STARTED`)."""


class _Input(BaseModel):
    model_config = ConfigDict(
        extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class TextInput(_Input):
    type: Literal["text"]
    text: str


class FunctionCallInput(_Input):
    name: str
    arguments: str = ""


class ToolCallInput(_Input):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallInput


class SystemInput(_Input):
    id: str
    role: Literal["system", "developer"]
    content: str


class UserInput(_Input):
    id: str
    role: Literal["user"]
    content: str | list[TextInput]


class AssistantInput(_Input):
    id: str
    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[ToolCallInput] | None = None


class ToolResultInput(_Input):
    id: str
    role: Literal["tool"]
    tool_call_id: str
    content: str | list[TextInput]
    error: str | None = None


class OtherInput(_Input):
    """Activity and reasoning messages: UI material the model does not read."""

    id: str
    role: Literal["activity", "reasoning"]


MessageInput = Annotated[
    SystemInput | UserInput | AssistantInput | ToolResultInput | OtherInput,
    Field(discriminator="role"),
]


class ToolInput(_Input):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str
    parameters: dict[str, Any] | None = None


class ContextInput(_Input):
    description: str
    value: str


class RunAgentInput(_Input):
    thread_id: str = Field(min_length=1, max_length=200)
    run_id: str = Field(min_length=1)
    protocol_version: str | None = None
    messages: list[MessageInput] = Field(min_length=1)
    tools: list[ToolInput] = Field(default_factory=list)
    context: list[ContextInput] = Field(default_factory=list)
    state: Any = None
    forwarded_props: Any = None

    @property
    def declares_1_0(self) -> bool:
        """Whether the client speaks AG-UI 1.0 or later, by the version's leading `MAJOR.MINOR`
        (one without it reads as newer, as the spec asks)."""
        if self.protocol_version is None:
            return False
        match = re.match(r"(\d+)\.(\d+)", self.protocol_version)
        return match is None or (int(match[1]), int(match[2])) >= (1, 0)

    def forwarded(self, key: str) -> str | None:
        """A string in `forwardedProps` (Rillet reads `model` and `mode` there)."""
        props = self.forwarded_props if isinstance(self.forwarded_props, dict) else {}
        value = props.get(key)
        return value if isinstance(value, str) and value else None

    def instructions(self) -> str | None:
        """`context` as instructions for the model."""
        if not self.context:
            return None
        return "Context from the application:\n" + "\n".join(
            f"- {item.description}: {item.value}" for item in self.context
        )


def parse_input(raw: object) -> RunAgentInput:
    """Validate a request body; raises `InvalidFrameError` naming each bad field."""
    try:
        return RunAgentInput.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise InvalidFrameError(f"invalid RunAgentInput: {problems}") from exc


def messages_of(run_input: RunAgentInput) -> list[ChatMessage]:
    """The conversation in the chat core's terms (activity and reasoning messages left out)."""
    out: list[ChatMessage] = []
    for message in run_input.messages:
        if isinstance(message, SystemInput):
            out.append(ChatMessage(role="system", text=message.content))
        elif isinstance(message, UserInput):
            out.append(ChatMessage(role="user", text=_text(message.content)))
        elif isinstance(message, AssistantInput):
            calls = tuple(
                ToolCall(id=call.id, name=call.function.name, arguments=call.function.arguments)
                for call in message.tool_calls or []
            )
            out.append(ChatMessage(role="assistant", text=message.content or "", tool_calls=calls))
        elif isinstance(message, ToolResultInput):
            text = message.error or _text(message.content)
            out.append(ChatMessage(role="tool", text=text, tool_call_id=message.tool_call_id))
    return out


def client_tools_of(run_input: RunAgentInput) -> list[ToolDefinition]:
    names = [tool.name for tool in run_input.tools]
    if len(set(names)) != len(names):
        raise InvalidFrameError("tools: every tool needs its own name")
    return [
        ToolDefinition(
            name=tool.name,
            description=tool.description,
            parameters_json_schema=tool.parameters or {"type": "object", "properties": {}},
        )
        for tool in run_input.tools
    ]


def _text(content: str | list[TextInput]) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


class AguiEncoder:
    """Encodes one run's events as AG-UI events, under the client's thread and run ids."""

    def __init__(self, *, thread_id: str, run_id: str, outcomes: bool) -> None:
        self._thread_id = thread_id
        self._run_id = run_id
        self._outcomes = outcomes
        self._message_id = ""
        self._model = ""
        self._message_started = False
        self._text_open = False
        self._reasoning_id: str | None = None
        self._reasoning_count = 0
        self._pending: list[str] = []
        self._failed = False

    def encode(self, event: RunEvent) -> list[dict[str, Any]]:
        """The AG-UI events for `event`, in order; often none."""
        if isinstance(event, RunStartedEvent):
            self._message_id, self._model = event.message_id, event.model
            return [
                {
                    "type": "RUN_STARTED",
                    "threadId": self._thread_id,
                    "runId": self._run_id,
                    "protocolVersion": PROTOCOL_VERSION,
                }
            ]
        if isinstance(event, TextDeltaEvent):
            out = self._close_reasoning()
            if not self._text_open:
                self._text_open = self._message_started = True
                out.append(self._text_start())
            delta = {"type": "TEXT_MESSAGE_CONTENT", "messageId": self._message_id}
            return [*out, {**delta, "delta": event.text}]
        if isinstance(event, ReasoningDeltaEvent):
            return [*self._close_text(), *self._reasoning(event.text)]
        if isinstance(event, ToolStartedEvent):
            return [*self._close_text(), *self._close_reasoning(), *self._tool_call(event)]
        if isinstance(event, ToolFinishedEvent):
            content = event.error if event.error is not None else _result_text(event.result)
            return [
                {
                    "type": "TOOL_CALL_RESULT",
                    "messageId": f"{event.tool_call_id}-result",
                    "toolCallId": event.tool_call_id,
                    "content": content,
                    "role": "tool",
                }
            ]
        if isinstance(event, ErrorEvent):
            self._failed = True
            closing = [*self._close_text(), *self._close_reasoning()]
            return [*closing, {"type": "RUN_ERROR", "message": event.message, "code": event.code}]
        if isinstance(event, RunFinishedEvent) and not self._failed:
            return [*self._close_text(), *self._close_reasoning(), self._run_finished(event)]
        return []

    def _text_start(self) -> dict[str, Any]:
        return {"type": "TEXT_MESSAGE_START", "messageId": self._message_id, "role": "assistant"}

    def _close_text(self) -> list[dict[str, Any]]:
        if not self._text_open:
            return []
        self._text_open = False
        return [{"type": "TEXT_MESSAGE_END", "messageId": self._message_id}]

    def _reasoning(self, text: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self._reasoning_id is None:
            self._reasoning_count += 1
            self._reasoning_id = f"{self._message_id}-reasoning-{self._reasoning_count}"
            out.append({"type": "REASONING_START", "messageId": self._reasoning_id})
            out.append(
                {
                    "type": "REASONING_MESSAGE_START",
                    "messageId": self._reasoning_id,
                    "role": "reasoning",
                }
            )
        content = {"type": "REASONING_MESSAGE_CONTENT", "messageId": self._reasoning_id}
        return [*out, {**content, "delta": text}]

    def _close_reasoning(self) -> list[dict[str, Any]]:
        if self._reasoning_id is None:
            return []
        message_id, self._reasoning_id = self._reasoning_id, None
        return [
            {"type": "REASONING_MESSAGE_END", "messageId": message_id},
            {"type": "REASONING_END", "messageId": message_id},
        ]

    def _tool_call(self, event: ToolStartedEvent) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not self._message_started:
            # The parent a tool call names must be a message the stream has carried.
            self._message_started = True
            out += [self._text_start(), {"type": "TEXT_MESSAGE_END", "messageId": self._message_id}]
        if event.runs_on == "client":
            self._pending.append(event.tool_call_id)
        call_id = event.tool_call_id
        args = json.dumps(event.args, separators=(",", ":"), ensure_ascii=False)
        return [
            *out,
            {
                "type": "TOOL_CALL_START",
                "toolCallId": call_id,
                "toolCallName": event.tool_name,
                "parentMessageId": self._message_id,
            },
            {"type": "TOOL_CALL_ARGS", "toolCallId": call_id, "delta": args},
            {"type": "TOOL_CALL_END", "toolCallId": call_id},
        ]

    def _run_finished(self, event: RunFinishedEvent) -> dict[str, Any]:
        finished: dict[str, Any] = {
            "type": "RUN_FINISHED",
            "threadId": self._thread_id,
            "runId": self._run_id,
        }
        if self._outcomes:
            if event.status == "cancelled":
                finished["outcome"] = {"type": "cancelled"}
            elif self._pending:
                finished["outcome"] = {"type": "success", "pendingToolCallIds": self._pending}
            else:
                finished["outcome"] = {"type": "success"}
        finished["usage"] = [
            {
                "model": self._model,
                "inputTokens": event.input_tokens,
                "outputTokens": event.output_tokens,
                "totalTokens": event.input_tokens + event.output_tokens,
            }
        ]
        return finished


def _result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    return json.dumps(result, separators=(",", ":"), ensure_ascii=False)
