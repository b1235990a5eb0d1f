"""UI message parts built from run events.

The assistant message a chat page shows is a fold over the run's events: text and reasoning
deltas join into blocks, tool events become tool parts. The same fold serves a live run and the
recovery of a run whose process died (from what its event log holds).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rillet.events import (
    ReasoningDeltaEvent,
    RunEvent,
    TextDeltaEvent,
    ToolConfirmationEvent,
    ToolFinishedEvent,
    ToolStartedEvent,
)


class PartsBuilder:
    """Accumulates UI parts from run events, in order."""

    def __init__(self, parts: Iterable[dict[str, Any]] = ()) -> None:
        self._parts: list[dict[str, Any]] = [dict(part) for part in parts]
        # Text added to the last part and not joined into it yet: joining once per read, not
        # once per delta, keeps a long answer from being copied again at every delta.
        self._pending: list[str] = []
        self._tools: dict[str, dict[str, Any]] = {
            part["tool_call_id"]: part for part in self._parts if part.get("type") == "tool"
        }

    @property
    def parts(self) -> list[dict[str, Any]]:
        self._join()
        return self._parts

    def add(self, event: RunEvent) -> None:
        if isinstance(event, TextDeltaEvent):
            self._add_text("text", event.text)
        elif isinstance(event, ReasoningDeltaEvent):
            self._add_text("reasoning", event.text)
        elif isinstance(event, ToolStartedEvent):
            self._join()
            part = {
                "type": "tool",
                "tool_call_id": event.tool_call_id,
                "tool_name": event.tool_name,
                "args": event.args,
                # A client's tool is run by the client: its result comes with the next message.
                "status": "running" if event.runs_on == "server" else "awaiting_client",
            }
            self._tools[event.tool_call_id] = part
            self._parts.append(part)
        elif isinstance(event, ToolConfirmationEvent):
            tool = self._tools.get(event.tool_call_id)
            if tool is not None:
                tool["status"] = "awaiting_confirmation"
                tool["confirmation_id"] = event.confirmation_id
        elif isinstance(event, ToolFinishedEvent):
            tool = self._tools.get(event.tool_call_id)
            if tool is not None:
                tool["status"] = event.status
                if event.error is not None:
                    tool["error"] = event.error
                else:
                    tool["result"] = event.result

    def _add_text(self, kind: str, text: str) -> None:
        if self._parts and self._parts[-1]["type"] == kind:
            self._pending.append(text)
        else:
            self._join()
            self._parts.append({"type": kind, "text": text})

    def _join(self) -> None:
        if self._pending:
            self._parts[-1]["text"] += "".join(self._pending)
            self._pending.clear()

    @property
    def text(self) -> str:
        """The answer text: every text part joined."""
        return "".join(part["text"] for part in self.parts if part["type"] == "text")


def parts_from_events(events: Iterable[RunEvent]) -> list[dict[str, Any]]:
    builder = PartsBuilder()
    for event in events:
        builder.add(event)
    return builder.parts
