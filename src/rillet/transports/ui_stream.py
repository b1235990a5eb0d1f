"""The Vercel AI SDK UI message stream (AI SDK 5, 6 and 7 `useChat`), PROTOCOL.md section 3.

Two halves. `ChatRequest` reads the body that `DefaultChatTransport` (and v4 `useChat`) posts and
`ChatRequest.to_message_request` turns it into the core's `MessageRequest`: the server keeps the
history, so only the new last user message's text is taken. `UIStreamEncoder` turns one run's
events into UI message chunks, a pure function of the events seen so far, so a replay from seq 1
sends exactly what a live client saw (text block ids are derived from the seq of their first
delta). Strict clients (ai 5.0.0-5.0.216 and 6.0.0-6.0.230) validate chunks with zod
`strictObject`s and fail on any key they do not know, so by default only keys that every one of
them accepts are sent; `sdk=6` adds `finishReason`, `abort`, tool approvals and denials.
A new model step after tool results is framed by `finish-step` / `start-step`, as the AI SDK's
own servers do.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rillet.chat.jobs import MessageRequest
from rillet.errors import InvalidFrameError, NotFoundError
from rillet.events import (
    ErrorEvent,
    FinalRunStatus,
    ReasoningDeltaEvent,
    RunEvent,
    RunFinishedEvent,
    RunStartedEvent,
    TextDeltaEvent,
    ToolConfirmationEvent,
    ToolFinishedEvent,
    ToolStartedEvent,
    UsageEvent,
)

Chunk = dict[str, Any]
BlockKind = Literal["text", "reasoning"]

HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}

FINISH_REASONS: dict[FinalRunStatus, str] = {
    "completed": "stop",
    "paused": "tool-calls",
    "cancelled": "other",
    "failed": "error",
    "interrupted": "error",
}
"""AI SDK finish reasons (hyphenated) for a run's final status."""

SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class UIMessage(BaseModel):
    """A message as the client holds it: AI SDK 5+ `parts`, or v4 `content` (with maybe parts)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = Field(default=None, max_length=200)
    role: Literal["system", "user", "assistant", "data", "tool"]
    parts: list[dict[str, Any]] = Field(default_factory=list)
    content: str | None = None


class ChatRequest(BaseModel):
    """The body of `POST /v1/chat`."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(pattern=SESSION_ID_PATTERN)
    """The chat id, which is the Rillet session id (created on first use)."""
    messages: list[UIMessage] = Field(min_length=1)
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = None  # the AI SDK's spelling
    mode: Literal["ask", "agent"] = "agent"
    model: str | None = None

    def to_message_request(self) -> MessageRequest:
        """The core's request: the last user message's text, or a regeneration."""
        if self.trigger == "regenerate-message":
            return MessageRequest(
                query="",
                session_id=self.id,
                mode=self.mode,
                model=self.model,
                regenerate=True,
                message_id=self.messageId,
            )
        last = self.messages[-1]
        if last.role == "assistant" and any(_awaits_approval(p) for p in last.parts):
            # Approvals arrive as the assistant message with answered approval parts.
            raise NotFoundError("tool confirmations are not supported yet")
        if last.role != "user":
            raise InvalidFrameError(f"the last message must come from the user, not {last.role}")
        if self.messageId is not None:
            raise InvalidFrameError(
                "editing a sent message is not supported: send a new message or regenerate"
            )
        return MessageRequest(
            query=user_text(last),
            client_id=f"ui:{self.id}:{last.id}" if last.id else None,
            session_id=self.id,
            mode=self.mode,
            model=self.model,
        )


def _awaits_approval(part: dict[str, Any]) -> bool:
    return part.get("state") == "approval-responded"


def user_text(message: UIMessage) -> str:
    """The text of a user message; refuses files, which Rillet does not take yet."""
    texts: list[str] = []
    for part in message.parts:
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "file":
            raise InvalidFrameError("attachments are not supported yet; send text only")
    if not texts and message.content is not None:
        return message.content
    return "\n".join(texts)


def sdk_version(query: str | None, header: str | None) -> int:
    """The AI SDK major version a client declared (`?sdk=6`, `x-rillet-sdk: 6`); 5 if none."""
    for value in (query, header):
        if value:
            try:
                return int(value.strip().removeprefix("v"))
            except ValueError as exc:
                raise InvalidFrameError(
                    f"sdk must be a major version such as 6, not {value!r}"
                ) from exc
    return 5


class UIStreamEncoder:
    """Encodes one run's events as UI message chunks.

    `sdk` is the client's AI SDK major version: below 6, only the keys of strict 5.0.0 clients.
    """

    def __init__(self, sdk: int = 5) -> None:
        self.v6 = sdk >= 6
        self._block: tuple[BlockKind, str] | None = None
        self._step_open = False
        self._tools_done = False

    def encode(self, event: RunEvent) -> list[Chunk]:
        """The chunks for `event`, in order (possibly none)."""
        if isinstance(event, TextDeltaEvent):
            return [*self._enter("text", event.seq), self._delta("text", event.text)]
        if isinstance(event, ReasoningDeltaEvent):
            return [*self._enter("reasoning", event.seq), self._delta("reasoning", event.text)]
        if isinstance(event, RunStartedEvent):
            self._step_open = True
            return [{"type": "start", "messageId": event.message_id}, {"type": "start-step"}]
        if isinstance(event, ToolStartedEvent):
            chunk = {
                "type": "tool-input-available",
                "toolCallId": event.tool_call_id,
                "toolName": event.tool_name,
                "input": event.args,
            }
            return [*self._enter(None, event.seq), chunk]
        if isinstance(event, ToolConfirmationEvent):
            if not self.v6:
                return []
            request = {
                "type": "tool-approval-request",
                "approvalId": event.confirmation_id,
                "toolCallId": event.tool_call_id,
            }
            return [*self._close(), request]
        if isinstance(event, ToolFinishedEvent):
            self._tools_done = True
            return [*self._close(), self._tool_output(event)]
        if isinstance(event, UsageEvent):
            return [{"type": "data-usage", "data": event.usage_data()}]
        if isinstance(event, ErrorEvent):
            return [*self._close(), {"type": "error", "errorText": event.message}]
        if isinstance(event, RunFinishedEvent):
            return self._finish(event)
        return []  # message.completed: the client built the same message from the chunks

    def _tool_output(self, event: ToolFinishedEvent) -> Chunk:
        if event.status == "completed":
            return {
                "type": "tool-output-available",
                "toolCallId": event.tool_call_id,
                "output": event.result,
            }
        if event.status == "denied" and self.v6:
            return {"type": "tool-output-denied", "toolCallId": event.tool_call_id}
        return {
            "type": "tool-output-error",
            "toolCallId": event.tool_call_id,
            "errorText": event.error or f"the tool call was {event.status}",
        }

    def _finish(self, event: RunFinishedEvent) -> list[Chunk]:
        chunks = self._close()
        if self._step_open:
            chunks.append({"type": "finish-step"})
            self._step_open = False
        finish: Chunk = {"type": "finish"}
        if self.v6:
            if event.status == "cancelled":
                chunks.append({"type": "abort"})
            finish["finishReason"] = FINISH_REASONS[event.status]
        chunks.append(finish)
        return chunks

    def _enter(self, kind: BlockKind | None, seq: int) -> list[Chunk]:
        """Chunks that must precede new content of `kind` (None: a tool call)."""
        chunks: list[Chunk] = []
        if self._tools_done or not self._step_open:
            chunks += self._close()
            if self._step_open:
                chunks.append({"type": "finish-step"})
            chunks.append({"type": "start-step"})
            self._step_open, self._tools_done = True, False
        if self._block is not None and self._block[0] != kind:
            chunks += self._close()
        if kind is not None and self._block is None:
            self._block = (kind, f"{kind[0]}{seq}")
            chunks.append({"type": f"{kind}-start", "id": self._block[1]})
        return chunks

    def _delta(self, kind: BlockKind, text: str) -> Chunk:
        assert self._block is not None
        return {"type": f"{kind}-delta", "id": self._block[1], "delta": text}

    def _close(self) -> list[Chunk]:
        if self._block is None:
            return []
        kind, block_id = self._block
        self._block = None
        return [{"type": f"{kind}-end", "id": block_id}]
