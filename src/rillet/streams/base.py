"""The `StreamBackend` protocol: per-run event logs, commands to runs, session activity, leases.

A run is the only producer of its log and a connection is only a subscriber, so nothing here may
assume the producer and the subscriber share a process: the Redis implementation maps each
operation onto `XADD`/`XREAD` (logs), pub/sub plus a list (commands), Lua scripts (activity) and
keys with a TTL and a fencing number (leases). A lease says which node executes a run; its fence
goes with every append, so once another node has taken an expired lease over, the old owner's
appends are refused (`LeaseLostError`) and only the new owner can end the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rillet.events import RunEvent

CommandKind = Literal["cancel", "decision", "message"]


@dataclass(frozen=True, slots=True)
class Command:
    """An instruction addressed to a run, wherever it executes."""

    kind: CommandKind
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "data": self.data}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Command:
        return cls(kind=raw["kind"], data=raw.get("data") or {})


class StreamBackend(Protocol):
    """Event logs, commands, per-session activity and run leases."""

    @property
    def shared(self) -> bool:
        """True when other processes see the same logs (so a run may outlive its node)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    # event logs
    async def open_log(self, run_id: str) -> None:
        """Create the run's log before its first event, so subscribers can wait on it."""

    async def append(self, event: RunEvent, fence: int | None = None) -> None:
        """Append to the event's run log. `event.seq` must be the log's last seq + 1 and the log
        must not have finished (else `StreamError`). `fence` is the appender's lease fence: once
        the run has a lease, an append with another fence (or none) raises `LeaseLostError`.
        A backend may return before the event is stored (appends stay in order): a refusal is
        then raised by the run's next append, and `run.finished` returns only once stored."""

    async def last_seq(self, run_id: str) -> int:
        """The highest seq in the log; 0 for an empty or unknown log."""

    async def has_log(self, run_id: str) -> bool:
        """True while the log exists (during the run and its retention time)."""

    def subscribe(self, run_id: str, after: int = 0) -> AsyncIterator[RunEvent]:
        """The events with seq > `after`: what the log holds, then live ones, ending after
        `run.finished`. Raises `ResumeExpiredError` when no such log exists (any more)."""

    async def read_all(self, run_id: str) -> list[RunEvent]:
        """Everything the log holds now, without waiting."""

    async def expire(self, run_id: str, after_s: float) -> None:
        """Drop the log `after_s` seconds from now (called once the run has finished)."""

    # commands
    async def send_command(self, run_id: str, command: Command) -> None:
        """Deliver to the run's command stream; kept until read, so a run that subscribes
        later still sees it."""

    def commands(self, run_id: str) -> AsyncIterator[Command]:
        """Commands for the run: those sent before this call, then new ones. Never ends;
        the caller stops iterating."""

    # session activity (atomic: the busy policy relies on it across processes)
    async def claim_session(self, session_id: str, run_id: str) -> str | None:
        """Make `run_id` the session's active run. Returns None on success, or the run id that
        is already active (nothing changes then)."""

    async def claim_or_enqueue(self, session_id: str, item: dict[str, Any]) -> bool:
        """Claim the session for `item["run_id"]` when free (True: start it now), else queue
        `item` behind the active run (False)."""

    async def release_session(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        """The finished `run_id` gives up the session. When work is queued, the oldest item is
        taken and becomes the active run in the same step, and is returned: the caller starts
        it. Otherwise the session becomes free and None is returned."""

    async def active_run(self, session_id: str) -> str | None: ...

    async def announce_run(self, session_id: str, run_id: str) -> None:
        """Tell watchers of the session that `run_id` started there."""

    def session_runs(self, session_id: str) -> AsyncIterator[str]:
        """The session's active run id (if any), then every run id announced from now on; a
        run id may come twice (callers drop repeats). Never ends."""

    # leases (who executes a run; see the module docstring)
    async def acquire_lease(self, run_id: str, ttl_s: float) -> int:
        """Take the run's lease for `ttl_s` seconds; returns its new fence (any older fence is
        refused from now on)."""

    async def renew_leases(self, leases: dict[str, int], ttl_s: float) -> list[str]:
        """Extend each lease (run id -> fence) by `ttl_s`; returns the run ids whose lease was
        taken over by another fence (their runs must stop)."""

    async def release_lease(self, run_id: str, fence: int) -> None:
        """Give the lease up after the run's log has ended (no-op if `fence` is stale)."""

    async def take_expired_leases(self, ttl_s: float, limit: int = 100) -> list[tuple[str, int]]:
        """Take over runs whose lease expired: each `(run_id, fence)` returned is won by this
        caller alone (across every node) and leased to it for `ttl_s`, to end the run."""
