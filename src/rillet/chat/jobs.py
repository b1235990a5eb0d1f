"""What a transport hands the chat core, and what the core runs: `MessageRequest`,
`Submitted` and `Job` (a run's inputs, JSON-ready so a queued job can travel through Redis).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelRequest, UserPromptPart
from pydantic_ai.tools import ToolDefinition

from rillet.errors import ProtocolError
from rillet.events import FinalRunStatus, Mode, RunStartedEvent
from rillet.storage.base import SessionRecord


@dataclass(frozen=True, slots=True)
class MessageRequest:
    """A user message as any transport hands it to the core."""

    query: str
    client_id: str | None = None
    session_id: str | None = None
    mode: Mode = "agent"
    model: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    regenerate: bool = False
    """Answer the session's last user message again, in place of its last answer (`query` is
    ignored; `message_id` may name that message or answer). Refused as `busy` while a run is
    active in the session, whatever the policy."""
    message_id: str | None = None
    history: list[ModelMessage] | None = None
    """A stateless client's whole model history before this message (OpenAI and AG-UI clients
    send it each time): used instead of the session's stored history, and stored with the run."""
    client_tools: list[ToolDefinition] = field(default_factory=list)
    """Tools the client declared and runs itself: calls to them end the run with reason
    `tool_calls` (`ToolStartedEvent.runs_on` is `client`)."""
    tool_results: dict[str, Any] = field(default_factory=dict)
    """The client's results of those calls, by tool call id; `query` may then be empty."""
    instructions: str | None = None
    """Extra instructions for this run only (OpenAI system messages, AG-UI `context`)."""


@dataclass(frozen=True, slots=True)
class Submitted:
    session: SessionRecord
    session_created: bool
    run_id: str
    message_id: str
    duplicate: bool = False
    queued: bool = False


@dataclass(frozen=True, slots=True)
class Job:
    """Everything needed to execute a run; also the queued item of the `enqueue` policy."""

    run_id: str
    session_id: str
    user_id: str
    message_id: str
    model: str
    mode: Mode
    prompt: str
    # The fields below are JSON (a queued job may travel through Redis).
    history: list[dict[str, Any]] | None = None
    client_tools: list[dict[str, Any]] = field(default_factory=list)
    tool_results: dict[str, Any] = field(default_factory=dict)
    instructions: str | None = None
    fresh: bool = False
    """The session was created by this run's message: it has no history to load."""

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Job:
        return cls(**item)

    def started_event(self) -> RunStartedEvent:
        """The `run.started` event that opens this run's log."""
        return RunStartedEvent(
            session_id=self.session_id,
            run_id=self.run_id,
            seq=0,
            message_id=self.message_id,
            model=self.model,
            mode=self.mode,
        )


def tool_json(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters_json_schema": tool.parameters_json_schema,
        "strict": tool.strict,
    }


def result_parts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The client's tool results as parts of the saved user message."""
    return [
        {"type": "tool-result", "tool_call_id": call_id, "result": result}
        for call_id, result in results.items()
    ]


def text_of(parts: list[dict[str, Any]]) -> str:
    return "\n".join(part["text"] for part in parts if part.get("type") == "text")


def has_prompt(message: ModelMessage) -> bool:
    return isinstance(message, ModelRequest) and any(
        isinstance(part, UserPromptPart) for part in message.parts
    )


def reason_for(status: FinalRunStatus, error: ProtocolError | None) -> str:
    if error is not None and status == "failed":
        return error.code
    return status
