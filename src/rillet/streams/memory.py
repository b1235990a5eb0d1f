"""In-process `StreamBackend`: event logs as lists, commands and announcements by direct call.

The default for one process. Everything lives in this process's memory, so a restart loses the
logs of running runs (the database still has their records). Subscribers wait on futures that an
append resolves, so an idle subscriber costs nothing. Leases and fences work as on Redis (so the
shared backend tests hold for both), with deadlines on this process's monotonic clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from rillet.errors import LeaseLostError, ResumeExpiredError, StreamError
from rillet.events import RunEvent
from rillet.streams.base import Command


class _Waitable:
    """Something subscribers wait on until it changes."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    async def wait(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        finally:
            if not future.done():
                future.cancel()

    def wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)


class _Log(_Waitable):
    __slots__ = ("events", "expiry", "finished")

    def __init__(self) -> None:
        super().__init__()
        self.events: list[RunEvent] = []
        self.finished = False
        self.expiry: asyncio.TimerHandle | None = None


class _Mailbox(_Waitable):
    __slots__ = ("pending",)

    def __init__(self) -> None:
        super().__init__()
        self.pending: deque[Command] = deque()


class MemoryBackend:
    """Event logs, commands and session activity for a single process."""

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}
        self._mailboxes: dict[str, _Mailbox] = {}
        self._active: dict[str, str] = {}
        self._queues: dict[str, deque[dict[str, Any]]] = {}
        self._watchers: dict[str, set[asyncio.Queue[str]]] = {}
        self._fences: dict[str, int] = {}
        self._deadlines: dict[str, float] = {}

    @property
    def shared(self) -> bool:
        return False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for log in self._logs.values():
            if log.expiry is not None:
                log.expiry.cancel()
        self._logs.clear()
        self._mailboxes.clear()

    async def ping(self) -> bool:
        return True

    # event logs
    async def open_log(self, run_id: str) -> None:
        self._logs.setdefault(run_id, _Log())

    async def append(self, event: RunEvent, fence: int | None = None) -> None:
        current = self._fences.get(event.run_id)
        if current is not None and fence != current:
            raise LeaseLostError(f"run {event.run_id} is leased with another fence")
        log = self._logs.get(event.run_id)
        if log is None:
            log = self._logs[event.run_id] = _Log()
        if log.finished:
            raise StreamError(f"run {event.run_id} has already finished")
        if event.seq != len(log.events) + 1:
            raise StreamError(
                f"seq {event.seq} does not follow {len(log.events)} in {event.run_id}"
            )
        log.events.append(event)
        if event.kind == "run.finished":
            log.finished = True
        log.wake()

    async def last_seq(self, run_id: str) -> int:
        log = self._logs.get(run_id)
        return len(log.events) if log is not None else 0

    async def has_log(self, run_id: str) -> bool:
        return run_id in self._logs

    async def read_all(self, run_id: str) -> list[RunEvent]:
        log = self._logs.get(run_id)
        return list(log.events) if log is not None else []

    async def subscribe(self, run_id: str, after: int = 0) -> AsyncIterator[RunEvent]:
        log = self._logs.get(run_id)
        if log is None:
            raise ResumeExpiredError(f"the events of run {run_id} are no longer available")
        index = max(after, 0)
        while True:
            while index < len(log.events):
                event = log.events[index]
                index += 1
                yield event
            if log.finished:
                return
            await log.wait()

    async def expire(self, run_id: str, after_s: float) -> None:
        log = self._logs.get(run_id)
        if log is None:
            return
        if log.expiry is not None:
            log.expiry.cancel()
        log.expiry = asyncio.get_running_loop().call_later(after_s, self._drop, run_id)

    def _drop(self, run_id: str) -> None:
        self._logs.pop(run_id, None)
        self._mailboxes.pop(run_id, None)
        self._fences.pop(run_id, None)

    # commands
    async def send_command(self, run_id: str, command: Command) -> None:
        mailbox = self._mailboxes.setdefault(run_id, _Mailbox())
        mailbox.pending.append(command)
        mailbox.wake()

    async def commands(self, run_id: str) -> AsyncIterator[Command]:
        mailbox = self._mailboxes.setdefault(run_id, _Mailbox())
        while True:
            while mailbox.pending:
                yield mailbox.pending.popleft()
            await mailbox.wait()

    # session activity
    async def claim_session(self, session_id: str, run_id: str) -> str | None:
        active = self._active.get(session_id)
        if active is not None and active != run_id:
            return active
        self._active[session_id] = run_id
        return None

    async def claim_or_enqueue(self, session_id: str, item: dict[str, Any]) -> bool:
        if await self.claim_session(session_id, item["run_id"]) is None:
            return True
        self._queues.setdefault(session_id, deque()).append(item)
        return False

    async def release_session(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        if self._active.get(session_id) != run_id:
            return None
        queue = self._queues.get(session_id)
        if queue:
            item = queue.popleft()
            if not queue:
                del self._queues[session_id]
            self._active[session_id] = item["run_id"]
            return item
        del self._active[session_id]
        return None

    async def active_run(self, session_id: str) -> str | None:
        return self._active.get(session_id)

    async def announce_run(self, session_id: str, run_id: str) -> None:
        for queue in self._watchers.get(session_id, ()):
            queue.put_nowait(run_id)

    async def session_runs(self, session_id: str) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._watchers.setdefault(session_id, set()).add(queue)
        active = self._active.get(session_id)
        if active is not None:
            queue.put_nowait(active)
        try:
            while True:
                yield await queue.get()
        finally:
            watchers = self._watchers.get(session_id)
            if watchers is not None:
                watchers.discard(queue)
                if not watchers:
                    del self._watchers[session_id]

    # leases
    async def acquire_lease(self, run_id: str, ttl_s: float) -> int:
        fence = self._fences[run_id] = self._fences.get(run_id, 0) + 1
        self._deadlines[run_id] = time.monotonic() + ttl_s
        return fence

    async def renew_leases(self, leases: dict[str, int], ttl_s: float) -> list[str]:
        lost = []
        for run_id, fence in leases.items():
            current = self._fences.get(run_id)
            if current == fence:
                self._deadlines[run_id] = time.monotonic() + ttl_s
            elif current is not None:
                lost.append(run_id)
        return lost

    async def release_lease(self, run_id: str, fence: int) -> None:
        if self._fences.get(run_id) == fence:
            self._deadlines.pop(run_id, None)

    async def take_expired_leases(self, ttl_s: float, limit: int = 100) -> list[tuple[str, int]]:
        now = time.monotonic()
        expired = [run_id for run_id, deadline in self._deadlines.items() if deadline <= now]
        return [(run_id, await self.acquire_lease(run_id, ttl_s)) for run_id in expired[:limit]]
