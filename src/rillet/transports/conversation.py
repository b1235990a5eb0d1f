"""A conversation as OpenAI-compatible and AG-UI clients send it, in the chat core's terms.

Both protocols send the whole conversation with every request. Each transport parses its own
message schema into `ChatMessage`s; `split_turn` separates the new input (the last user message,
and the tool results that answer the last assistant message's tool calls) from what came before,
and `to_model_messages` turns what came before into pydantic-ai history for a stateless run. With
a session, the server's stored history stands and only the new input is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from rillet.errors import InvalidFrameError

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call an assistant message made; `arguments` is JSON text as the client sent it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a client-held conversation (`system` also stands for `developer`)."""

    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    """For `tool` messages: the call this result answers."""


@dataclass(frozen=True, slots=True)
class Turn:
    """A conversation split into what came before and the new input."""

    before: list[ChatMessage]
    query: str
    """The new user text; empty when the new input is only tool results."""
    tool_results: dict[str, str] = field(default_factory=dict)
    """Results of the last assistant message's tool calls, by tool call id."""
    instructions: list[str] = field(default_factory=list)
    """The texts of every system message, for a run that keeps its history on the server."""


def split_turn(messages: Sequence[ChatMessage]) -> Turn:
    """Split off the new input: the trailing tool results and the final user message.

    Raises:
        InvalidFrameError: the conversation is empty or does not end with a user message or tool
            results.
    """
    if not messages:
        raise InvalidFrameError("messages must not be empty")
    end = len(messages)
    query = ""
    if messages[-1].role == "user":
        query = messages[-1].text
        end -= 1
    start = end
    while start > 0 and messages[start - 1].role == "tool":
        start -= 1
    if start == end and messages[-1].role != "user":
        raise InvalidFrameError(
            "the last message must be a user message or tool results, "
            f"not a {messages[-1].role} message"
        )
    results = {m.tool_call_id: m.text for m in messages[start:end] if m.tool_call_id is not None}
    return Turn(
        before=list(messages[:start]),
        query=query,
        tool_results=results,
        instructions=[m.text for m in messages if m.role == "system" and m.text],
    )


def to_model_messages(messages: Sequence[ChatMessage]) -> list[ModelMessage]:
    """The pydantic-ai history a model would have written for `messages`.

    Consecutive system, user and tool messages form one model request; each assistant message
    is one model response.

    Raises:
        InvalidFrameError: a tool message answers no tool call made before it.
    """
    history: list[ModelMessage] = []
    pending: list[ModelRequestPart] = []
    names: dict[str, str] = {}
    for message in messages:
        if message.role == "assistant":
            if pending:
                history.append(ModelRequest(parts=pending))
                pending = []
            parts: list[ModelResponsePart] = [TextPart(message.text)] if message.text else []
            for call in message.tool_calls:
                names[call.id] = call.name
                parts.append(ToolCallPart(call.name, call.arguments or "{}", tool_call_id=call.id))
            if parts:
                history.append(ModelResponse(parts=parts))
        elif message.role == "system":
            pending.append(SystemPromptPart(message.text))
        elif message.role == "user":
            pending.append(UserPromptPart(message.text))
        else:
            call_id = message.tool_call_id or ""
            if call_id not in names:
                raise InvalidFrameError(
                    f"a tool message answers tool call {call_id!r}, which no assistant message made"
                )
            pending.append(
                ToolReturnPart(tool_name=names[call_id], content=message.text, tool_call_id=call_id)
            )
    if pending:
        history.append(ModelRequest(parts=pending))
    return history
