"""WebSocket protocol v1 frames (PROTOCOL.md section 2): parsing client frames and encoding run
events into server frames.

Parsing turns any bad input into `InvalidFrameError` with a message that says what was wrong;
encoding is a pure function of a run event, so a replay sends exactly what a live client saw.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rillet.errors import InvalidFrameError, ProtocolError
from rillet.events import (
    ErrorEvent,
    MessageCompletedEvent,
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

PROTOCOL_VERSION = 1


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class InitFrame(_Frame):
    type: Literal["init"]
    token: str | None = None


class MessageFrame(_Frame):
    type: Literal["message"]
    id: str | None = Field(default=None, max_length=200)
    query: str
    session_id: str | None = None
    mode: Literal["ask", "agent"] = "agent"
    model: str | None = None
    provider_preference: list[str] = Field(default_factory=list)
    attachments: list[dict[str, Any]] = Field(default_factory=list)


class ControlFrame(_Frame):
    type: Literal["control"]
    action: Literal["cancel"]
    session_id: str
    run_id: str | None = None


class ConfirmationResponseFrame(_Frame):
    type: Literal["confirmation_response"]
    confirmation_id: str
    decision: Literal["approve", "deny"]
    reason: str | None = None


class SubscribeFrame(_Frame):
    type: Literal["subscribe"]
    session_id: str
    run_id: str | None = None
    after: int | None = Field(default=None, ge=0)


class UnsubscribeFrame(_Frame):
    type: Literal["unsubscribe"]
    session_id: str


class PingFrame(_Frame):
    type: Literal["ping"]
    t: Any = None


ClientFrame = Annotated[
    InitFrame
    | MessageFrame
    | ControlFrame
    | ConfirmationResponseFrame
    | SubscribeFrame
    | UnsubscribeFrame
    | PingFrame,
    Field(discriminator="type"),
]
_client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
FRAME_TYPES = (
    "init",
    "message",
    "control",
    "confirmation_response",
    "subscribe",
    "unsubscribe",
    "ping",
)


def parse_frame(text: str) -> ClientFrame:
    """Parse one client frame; raises `InvalidFrameError` saying what is wrong."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidFrameError(f"the frame is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidFrameError("a frame must be a JSON object with a 'type'")
    kind = raw.get("type")
    if kind not in FRAME_TYPES:
        raise InvalidFrameError(
            f"unknown frame type {kind!r}; expected one of: {', '.join(FRAME_TYPES)}"
        )
    try:
        return _client_frame.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or 'frame'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise InvalidFrameError(f"invalid {kind} frame: {problems}") from exc


def frame(
    kind: str,
    data: dict[str, Any],
    *,
    session_id: str | None = None,
    run_id: str | None = None,
    seq: int | None = None,
) -> str:
    out: dict[str, Any] = {"type": kind, "session_id": session_id, "run_id": run_id}
    if seq is not None:
        out["seq"] = seq
    out["data"] = data
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def error_frame(
    error: ProtocolError, *, session_id: str | None = None, ref: str | None = None
) -> str:
    data: dict[str, Any] = {"code": error.code, "text": error.message, "retryable": error.retryable}
    if ref is not None:
        data["ref"] = ref
    return frame("error", data, session_id=session_id)


class EventEncoder:
    """Encodes one run's events as server frames; remembers tool names for `tool_call` ends."""

    def __init__(self) -> None:
        self._tools: dict[str, tuple[str, dict[str, Any]]] = {}

    def encode(self, event: RunEvent) -> tuple[str, dict[str, Any]]:  # noqa: C901 - one dispatch
        """The `(type, data)` of the frame for `event`."""
        if isinstance(event, TextDeltaEvent):
            return "token", {"text": event.text}
        if isinstance(event, ReasoningDeltaEvent):
            return "reasoning", {"text": event.text}
        if isinstance(event, RunStartedEvent):
            return "status", {
                "status": "START",
                "message_id": event.message_id,
                "model": event.model,
                "mode": event.mode,
            }
        if isinstance(event, ToolStartedEvent):
            self._tools[event.tool_call_id] = (event.tool_name, event.args)
            return "tool_call", {
                "tool_call_id": event.tool_call_id,
                "tool_name": event.tool_name,
                "args": event.args,
                "status": "started",
            }
        if isinstance(event, ToolFinishedEvent):
            name, args = self._tools.get(event.tool_call_id, ("", {}))
            data: dict[str, Any] = {
                "tool_call_id": event.tool_call_id,
                "tool_name": name,
                "args": args,
                "status": event.status,
            }
            if event.error is not None:
                data["error"] = event.error
            else:
                data["result"] = event.result
            return "tool_call", data
        if isinstance(event, ToolConfirmationEvent):
            return "confirmation_request", event.payload()
        if isinstance(event, UsageEvent):
            return "usage_info", {"total_cost_usd": None, **event.usage_data()}
        if isinstance(event, MessageCompletedEvent):
            return "message", {
                "message_id": event.message_id,
                "role": "assistant",
                "parts": event.parts,
                "status": event.status,
            }
        if isinstance(event, ErrorEvent):
            return "error", {
                "code": event.code,
                "text": event.message,
                "retryable": event.retryable,
            }
        if isinstance(event, RunFinishedEvent):
            if event.status == "paused":
                return "status", {"status": "AWAITING_CONFIRMATION", "reason": event.reason}
            return "status", {
                "status": "END",
                "reason": event.reason,
                "isComplete": True,
                "run_status": event.status,
                "input_tokens": event.input_tokens,
                "output_tokens": event.output_tokens,
                "cost_usd": event.cost_usd,
            }
        raise InvalidFrameError(f"no frame for event kind {event.kind}")
