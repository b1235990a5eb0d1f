"""The `Store` protocol: every durable record Rillet keeps, and the records it returns.

The database is the record of what happened (DESIGN.md "The one idea"); event logs are transient.
Every read that takes a `user_id` is scoped by it: another user's object is `NotFoundError`,
exactly as if it did not exist. Times are timezone-aware UTC. Ids are strings (uuid4 hex unless a
caller provides one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from rillet.events import FinalRunStatus, MessageStatus, Mode, RunStatus

Role = Literal["user", "assistant"]


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    user_id: str
    prefix: str
    """First characters of the key, shown in listings; the key itself is never stored."""
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    user_id: str
    title: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A UI-tier message: what a chat page shows."""

    id: str
    session_id: str
    role: Role
    parts: list[dict[str, Any]]
    """UI parts, e.g. `{"type": "text", "text": ...}`, `{"type": "tool", ...}`."""
    status: MessageStatus
    created_at: datetime
    run_id: str | None = None
    client_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    session_id: str
    user_id: str
    message_id: str
    """The assistant message this run writes."""
    user_message_id: str | None
    status: RunStatus
    model: str
    mode: Mode
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One model request's usage."""

    run_id: str
    user_id: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    latency_ms: float | None
    created_at: datetime
    id: str = ""


@dataclass(frozen=True, slots=True)
class TurnStart:
    """What `Store.begin_turn` created (or found, for a repeated client message id)."""

    session: SessionRecord
    session_created: bool
    user_message: MessageRecord
    run: RunRecord
    duplicate: bool = False
    """True when `client_id` was already used by this user: nothing new was created."""


@dataclass(frozen=True, slots=True)
class Page:
    items: list[MessageRecord]
    next_cursor: str | None = field(default=None)


class Store(Protocol):
    """Durable storage. Implementations: `storage.sql.SqlStore` (SQLite and PostgreSQL)."""

    async def start(self) -> None:
        """Connect and apply migrations (idempotent)."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the database answers (for `/readyz`)."""

    # users and keys
    async def ensure_user(self, name: str) -> UserRecord:
        """The user with this name, created on first use."""

    async def create_api_key(self, user_id: str, key_hash: str, prefix: str) -> ApiKeyRecord: ...

    async def user_for_key(self, key_hash: str) -> UserRecord | None:
        """The owner of an unrevoked key with this hash, else None."""

    async def list_api_keys(self, user_id: str) -> list[ApiKeyRecord]: ...

    async def revoke_api_key(self, user_id: str, key_id: str) -> None: ...

    # sessions
    async def get_session(self, user_id: str, session_id: str) -> SessionRecord:
        """Raises `NotFoundError` when missing or not the user's."""

    async def list_sessions(
        self, user_id: str, *, limit: int = 50, offset: int = 0
    ) -> list[SessionRecord]:
        """Newest `updated_at` first."""

    async def create_session(
        self, user_id: str, title: str = "", *, session_id: str | None = None
    ) -> SessionRecord:
        """A new session; with `session_id` the caller picks its id (AI SDK clients name their
        chats). If that id already exists, the user's own session is returned as it is, and
        another user's raises `NotFoundError`."""

    async def rename_session(self, user_id: str, session_id: str, title: str) -> SessionRecord: ...

    async def delete_session(self, user_id: str, session_id: str) -> None:
        """Deletes the session with its messages, runs, history (usage rows stay)."""

    # turns and runs
    async def begin_turn(
        self,
        *,
        user_id: str,
        session_id: str | None,
        client_id: str | None,
        text: str,
        attachments: list[dict[str, Any]] | None,
        model: str,
        mode: Mode,
        run_id: str | None = None,
    ) -> TurnStart:
        """In one transaction: create the session when `session_id` is None (title = first 50
        characters of `text`), save the user message (parts `[{"type": "text", "text": text}]`
        plus attachments), create the assistant message (status `streaming`, empty parts) and
        the run (status `running`). `session_id` of another user raises `NotFoundError`.
        A `client_id` this user already sent returns the first turn with `duplicate=True`
        (unique per user; safe under concurrent calls)."""

    async def start_continuation(
        self, *, user_id: str, session_id: str, message_id: str, model: str, mode: Mode
    ) -> RunRecord:
        """A new `running` run that continues writing assistant message `message_id`."""

    async def begin_regeneration(
        self,
        *,
        user_id: str,
        session_id: str,
        model: str,
        mode: Mode,
        message_id: str | None = None,
        run_id: str | None = None,
    ) -> TurnStart:
        """In one transaction, replace the session's last answer: delete the assistant messages
        after the last user message, with the runs that wrote them and those runs' model history
        (usage rows stay), then create a new assistant message (`streaming`) and run (`running`)
        answering that user message again. `message_id`, when given, must name that user message
        or the answer being replaced (`InvalidFrameError` otherwise); a session without a user
        message raises `NotFoundError`."""

    async def get_run(self, user_id: str, run_id: str) -> RunRecord: ...

    async def run_for_client_id(self, user_id: str, client_id: str) -> RunRecord | None:
        """The run started by the user's message with this client id, if any."""

    async def get_run_any(self, run_id: str) -> RunRecord | None:
        """Unscoped lookup, for the server's own recovery work."""

    async def runs_with_status(self, status: RunStatus) -> list[RunRecord]: ...

    async def latest_run(self, user_id: str, session_id: str) -> RunRecord | None: ...

    async def finish_run(
        self,
        run_id: str,
        *,
        status: FinalRunStatus,
        reason: str,
        error: str | None,
        parts: list[dict[str, Any]],
        message_status: MessageStatus,
        history: list[dict[str, Any]] | None = None,
    ) -> RunRecord:
        """Set the run's final status and timings, and the assistant message's parts and status,
        and append the run's model `history` (pydantic-ai messages as JSON), in one transaction.
        Token and cost totals are summed from the run's usage rows. Only a `running` run can be
        finished; finishing one that is already final returns it unchanged."""

    async def add_usage(self, usage: UsageRecord) -> float:
        """Save one model request's usage; returns the user's new total cost in USD."""

    async def user_cost(self, user_id: str) -> float:
        """Total cost in USD of all the user's usage rows with a known cost."""

    # messages
    async def list_messages(
        self, user_id: str, session_id: str, *, limit: int = 100, before: str | None = None
    ) -> Page:
        """Oldest first within the page; `before` is a cursor from a previous page
        (`next_cursor`, which pages towards older messages)."""

    # model history (pydantic-ai messages as JSON, append-only per run)
    async def append_history(
        self, *, session_id: str, run_id: str, messages: list[dict[str, Any]]
    ) -> None: ...

    async def load_history(self, session_id: str) -> list[dict[str, Any]]:
        """All history entries of the session, in the order appended."""
