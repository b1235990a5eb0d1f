"""The run events: the one schema every transport encodes (PROTOCOL.md section 1).

A run appends these to its event log; `seq` starts at 1 per run and has no gaps. Events are
immutable, and `to_dict`/`from_dict` give the JSON form stored in logs and sent over the wire.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

EventKind = Literal[
    "run.started",
    "text.delta",
    "reasoning.delta",
    "tool.started",
    "tool.confirmation",
    "tool.finished",
    "usage",
    "message.completed",
    "run.finished",
    "error",
]
RunStatus = Literal["running", "completed", "cancelled", "failed", "interrupted", "paused"]
FinalRunStatus = Literal["completed", "cancelled", "failed", "interrupted", "paused"]
MessageStatus = Literal["streaming", "complete", "cancelled", "error", "interrupted"]
ToolStatus = Literal["completed", "failed", "denied", "blocked", "skipped", "cancelled"]
Mode = Literal["ask", "agent"]
ToolSide = Literal["server", "client"]

MESSAGE_STATUS_FOR_RUN: dict[FinalRunStatus, MessageStatus] = {
    "completed": "complete",
    "paused": "complete",
    "cancelled": "cancelled",
    "failed": "error",
    "interrupted": "interrupted",
}


_COMMON_FIELDS = frozenset({"session_id", "run_id", "seq"})
_PAYLOAD_FIELDS: dict[type, tuple[str, ...]] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEvent:
    """Fields shared by every run event."""

    kind: ClassVar[EventKind]
    session_id: str
    run_id: str
    seq: int

    def payload(self) -> dict[str, Any]:
        """The kind-specific fields, as JSON-ready values."""
        names = _PAYLOAD_FIELDS.get(type(self))
        if names is None:
            names = _PAYLOAD_FIELDS[type(self)] = tuple(
                f.name for f in dataclasses.fields(self) if f.name not in _COMMON_FIELDS
            )
        return {name: getattr(self, name) for name in names}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "session_id": self.session_id,
            "run_id": self.run_id,
            "seq": self.seq,
            **self.payload(),
        }

    def with_seq(self, seq: int) -> RunEvent:
        return dataclasses.replace(self, seq=seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStartedEvent(RunEvent):
    kind: ClassVar[EventKind] = "run.started"
    message_id: str
    model: str
    mode: Mode


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDeltaEvent(RunEvent):
    kind: ClassVar[EventKind] = "text.delta"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningDeltaEvent(RunEvent):
    kind: ClassVar[EventKind] = "reasoning.delta"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolStartedEvent(RunEvent):
    kind: ClassVar[EventKind] = "tool.started"
    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    runs_on: ToolSide = "server"
    """`client` for a tool the client declared (OpenAI `tools`, AG-UI `tools`): the server does
    not run it, no `tool.finished` follows, and the run ends with reason `tool_calls`; the
    client sends the result with its next message."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolConfirmationEvent(RunEvent):
    kind: ClassVar[EventKind] = "tool.confirmation"
    confirmation_id: str
    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    risk: str
    expires_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolFinishedEvent(RunEvent):
    kind: ClassVar[EventKind] = "tool.finished"
    tool_call_id: str
    status: ToolStatus
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageEvent(RunEvent):
    kind: ClassVar[EventKind] = "usage"
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    user_cost_usd: float | None = None
    """The user's total cost after this request (for `usage_info.total_cost_usd`)."""

    def usage_data(self) -> dict[str, Any]:
        """The usage as transports send it; the user's total only when it is known."""
        data: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
        }
        if self.user_cost_usd is not None:
            data["total_cost_usd"] = self.user_cost_usd
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageCompletedEvent(RunEvent):
    kind: ClassVar[EventKind] = "message.completed"
    message_id: str
    parts: list[dict[str, Any]]
    status: MessageStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinishedEvent(RunEvent):
    kind: ClassVar[EventKind] = "run.finished"
    status: FinalRunStatus
    reason: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorEvent(RunEvent):
    kind: ClassVar[EventKind] = "error"
    code: str
    message: str
    retryable: bool = False


EVENT_TYPES: dict[str, type[RunEvent]] = {
    cls.kind: cls
    for cls in (
        RunStartedEvent,
        TextDeltaEvent,
        ReasoningDeltaEvent,
        ToolStartedEvent,
        ToolConfirmationEvent,
        ToolFinishedEvent,
        UsageEvent,
        MessageCompletedEvent,
        RunFinishedEvent,
        ErrorEvent,
    )
}


def event_from_dict(data: dict[str, Any]) -> RunEvent:
    """Rebuild an event from `RunEvent.to_dict` output (e.g. read back from Redis)."""
    fields = dict(data)
    cls = EVENT_TYPES[fields.pop("kind")]
    return cls(**fields)
