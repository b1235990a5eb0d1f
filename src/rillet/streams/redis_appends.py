"""Appends to Redis run logs, grouped and pipelined.

Every event appended by any run of this process while the previous group was on its way (or, for
a small group, within the next 2 ms) goes to Redis in the next one, as one `APPEND` script call:
one command per group instead of one per event keeps Redis and this process cheap at high
concurrency, and appends need one connection.
A run does not wait for Redis between its events (as with the memory backend, its producer goes
on at once): its appends are queued in order and a refusal is raised by its next append; only
`run.finished` waits until Redis has accepted everything before it. A queued append is sent even
when its caller is cancelled, so a log never has a gap. What Redis accepted reaches this
process's own subscribers (`OwnLog`) from the sending task, in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rillet.errors import LeaseLostError, StreamError
from rillet.events import RunEvent
from rillet.streams.memory import _Waitable

logger = logging.getLogger(__name__)

MAX_GROUP = 500
"""Appends sent in one script call at most."""
LINGER_S = 0.002
"""How long a small group waits for more appends before it goes: fewer, larger script calls
when Redis answers faster than the runs append (each call costs the sender ~80 us of CPU)."""
LINGER_BELOW = 64
"""A group of at least this many appends goes at once."""
MAX_BROKEN = 10_000
"""Refusals remembered for runs that have not ended (one per run; the oldest go first)."""

RunScript = Callable[[list[str], list[Any]], Awaitable[Any]]


class OwnLog(_Waitable):
    """The events of a run this process produces, as Redis has accepted them."""

    __slots__ = ("detached", "events", "finished")

    def __init__(self) -> None:
        super().__init__()
        self.events: list[RunEvent] = []
        self.finished = False
        self.detached = False
        """Set when an append failed: Redis alone has what comes next."""


async def follow(own: OwnLog, after: int) -> AsyncIterator[RunEvent]:
    """The events of a run produced here after seq `after`, until it finishes or is detached."""
    index = max(after, 0)
    while True:
        while index < len(own.events):
            index += 1
            yield own.events[index - 1]
        if own.finished or own.detached:
            return
        await own.wait()


@dataclass
class _Append:
    event: RunEvent
    fence: int | None
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class AppendGroups:
    """Sends appends to Redis in groups, one group in flight at a time."""

    def __init__(
        self,
        run_script: RunScript,
        prefix: str,
        maxlen: int,
        keep_s: int,
        own: dict[str, OwnLog],
    ) -> None:
        self._run_script = run_script
        self._prefix = prefix
        self._maxlen = maxlen
        self._keep_s = keep_s
        self._own = own
        self._pending: list[_Append] = []
        self._sender: asyncio.Task[None] | None = None
        self._broken: dict[str, StreamError] = {}
        self.groups_sent = 0

    async def append(self, event: RunEvent, fence: int | None) -> None:
        """Queue `event`; raise what refused an earlier append of its run. `run.finished`
        returns once Redis holds it (or raises why it does not)."""
        final = event.kind == "run.finished"
        broken = self._broken.pop(event.run_id, None) if final else self._broken.get(event.run_id)
        if broken is not None:
            raise type(broken)(str(broken))
        item = _Append(event, fence)
        self._pending.append(item)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all(), name="redis-appends")
        if final:
            # Shielded: the sender finishes the append whatever happens to the caller.
            await asyncio.shield(item.done)

    def forget(self, run_id: str) -> None:
        """The run's log is closed: drop what is remembered about it."""
        self._broken.pop(run_id, None)

    async def close(self) -> None:
        if self._sender is not None and not self._sender.done():
            await asyncio.wait([self._sender], timeout=5)

    async def _send_all(self) -> None:
        while self._pending:
            if len(self._pending) < LINGER_BELOW:
                await asyncio.sleep(LINGER_S)
            group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            args: list[Any] = [self._prefix, self._maxlen, self._keep_s]
            for item in group:
                event = item.event
                payload = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
                fence = "-" if item.fence is None else item.fence
                final = int(event.kind == "run.finished")
                args.append(f"{event.run_id} {event.seq} {fence} {final} {payload}")
            replies: list[Any] = [None] * len(group)
            try:
                refused = await self._run_script([], args)
                for index in range(0, len(refused), 2):
                    replies[int(refused[index]) - 1] = refused[index + 1]
            except StreamError as exc:
                replies = [exc] * len(group)
            except Exception as exc:  # never leave an append waiting
                logger.exception("appending to Redis failed")
                replies = [StreamError(f"append: {exc}")] * len(group)
            self.groups_sent += 1
            for item, reply in zip(group, replies, strict=True):
                self._settle(item, reply)

    def _settle(self, item: _Append, reply: Any) -> None:
        event = item.event
        own = self._own.get(event.run_id)
        if reply is None:
            if event.kind == "run.finished":
                self._broken.pop(event.run_id, None)
            if own is not None:
                own.events.append(event)
                own.finished = event.kind == "run.finished"
                own.wake()
                if own.finished:
                    del self._own[event.run_id]
            if not item.done.done():
                item.done.set_result(None)
            return
        if not isinstance(reply, StreamError):
            text = reply.decode() if isinstance(reply, bytes) else str(reply)
            error = LeaseLostError if text.startswith("FENCED") else StreamError
            reply = error(f"append to run {event.run_id}: {text}")
        if own is not None:
            # Redis alone has what comes next: this process's subscribers go read it there.
            del self._own[event.run_id]
            own.detached = True
            own.wake()
        if event.kind != "run.finished":
            self._broken.setdefault(event.run_id, reply)
            while len(self._broken) > MAX_BROKEN:
                del self._broken[next(iter(self._broken))]
        if not item.done.done():
            item.done.set_exception(reply)
            item.done.exception()  # retrieved: nobody may be waiting for it
