"""A fixed run, as the list of run events a transport encoder is given, for encoder tests."""

from __future__ import annotations

from typing import Any

from rillet.events import (
    ErrorEvent,
    FinalRunStatus,
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

SESSION = "chat-1"
RUN = "run-1"
MESSAGE = "msg-1"


def numbered(*events: RunEvent) -> list[RunEvent]:
    """`events` with seq 1, 2, 3, ... in order."""
    return [event.with_seq(seq) for seq, event in enumerate(events, start=1)]


def _common() -> dict[str, Any]:
    return {"session_id": SESSION, "run_id": RUN, "seq": 0}


def started() -> RunStartedEvent:
    return RunStartedEvent(**_common(), message_id=MESSAGE, model="demo", mode="agent")


def text(value: str) -> TextDeltaEvent:
    return TextDeltaEvent(**_common(), text=value)


def reasoning(value: str) -> ReasoningDeltaEvent:
    return ReasoningDeltaEvent(**_common(), text=value)


def tool_started(call: str, name: str, args: dict[str, Any]) -> ToolStartedEvent:
    return ToolStartedEvent(**_common(), tool_call_id=call, tool_name=name, args=args)


def tool_finished(
    call: str, status: Any, result: Any = None, error: str | None = None
) -> ToolFinishedEvent:
    return ToolFinishedEvent(
        **_common(), tool_call_id=call, status=status, result=result, error=error
    )


def confirmation(call: str) -> ToolConfirmationEvent:
    return ToolConfirmationEvent(
        **_common(),
        confirmation_id="conf-1",
        tool_call_id=call,
        tool_name="delete_file",
        args={"path": "a.txt"},
        risk="high",
        expires_at="2026-11-21T20:00:00+00:00",
    )


def usage(tokens_in: int, tokens_out: int) -> UsageEvent:
    return UsageEvent(**_common(), input_tokens=tokens_in, output_tokens=tokens_out, cost_usd=0.5)


def error(message: str) -> ErrorEvent:
    return ErrorEvent(**_common(), code="provider_error", message=message, retryable=True)


def completed(status: Any = "complete") -> MessageCompletedEvent:
    return MessageCompletedEvent(**_common(), message_id=MESSAGE, parts=[], status=status)


def finished(
    status: FinalRunStatus = "completed", tokens: tuple[int, int] = (0, 0)
) -> RunFinishedEvent:
    return RunFinishedEvent(
        **_common(),
        status=status,
        reason=status,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost_usd=None,
    )


def tool_run() -> list[RunEvent]:
    """Reasoning and text, a model request that calls two tools (one fails), then the answer."""
    return numbered(
        started(),
        reasoning("Let me "),
        reasoning("look."),
        text("Checking"),
        usage(10, 4),
        tool_started("c1", "current_time", {"timezone": "UTC"}),
        tool_started("c2", "calculator", {"expression": "1/0"}),
        tool_finished("c1", "completed", result="12:00"),
        tool_finished("c2", "failed", error="division by zero"),
        text("It is "),
        text("12:00."),
        usage(20, 3),
        completed(),
        finished("completed", (30, 7)),
    )
