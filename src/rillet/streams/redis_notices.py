"""Pub/sub notices of the Redis stream backend: "a command was sent to run R" and "run R started
in session S", routed to the waiters of this process.

One pub/sub connection per process, subscribed to two channels under the prefix. A notice only
says where to look: the command itself is in a list and the active run in a key, so a notice lost
while Redis was away costs nothing. After a reconnection (redis-py subscribes again by itself)
every waiter is woken to look again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from rillet.errors import StreamError

logger = logging.getLogger(__name__)

SessionQueue = asyncio.Queue[str | None]
"""Run ids announced in a session; None means "read the session's active run again"."""


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class Notices:
    """This process's end of the two notice channels."""

    def __init__(self, client: Redis, prefix: str) -> None:
        self.commands_channel = f"{prefix}commands"
        self.runs_channel = f"{prefix}runs"
        self._client = client
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._command_waiters: dict[str, set[asyncio.Event]] = {}
        self._session_waiters: dict[str, set[SessionQueue]] = {}

    async def start(self) -> None:
        self._pubsub = self._client.pubsub()
        try:
            await self._pubsub.subscribe(self.commands_channel, self.runs_channel)
        except (RedisError, OSError) as exc:
            raise StreamError(f"subscribing to Redis notices failed: {exc}") from exc
        self._listener = asyncio.create_task(self._listen(self._pubsub), name="redis-notices")
        await asyncio.wait_for(self._subscribed.wait(), timeout=10)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._client.aclose()

    @contextlib.contextmanager
    def command_waiter(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever a command may have been sent to `run_id`."""
        wake = asyncio.Event()
        self._command_waiters.setdefault(run_id, set()).add(wake)
        try:
            yield wake
        finally:
            _discard(self._command_waiters, run_id, wake)

    @contextlib.contextmanager
    def session_queue(self, session_id: str) -> Iterator[SessionQueue]:
        """A queue of the run ids announced in `session_id` (see `SessionQueue`)."""
        queue: SessionQueue = asyncio.Queue()
        self._session_waiters.setdefault(session_id, set()).add(queue)
        try:
            yield queue
        finally:
            _discard(self._session_waiters, session_id, queue)

    async def _listen(self, pubsub: PubSub) -> None:
        confirmations = 0
        while True:
            try:
                message = await pubsub.get_message(timeout=1.0)
            except (RedisError, OSError) as exc:
                logger.warning("Redis pub/sub failed (%s); reconnecting", exc)
                await asyncio.sleep(0.25)
                continue
            if message is None:
                continue
            kind, data = message["type"], message["data"]
            if kind == "subscribe":
                confirmations += 1
                if confirmations == 2:
                    self._subscribed.set()
                elif confirmations > 2:
                    self._wake_all()
            elif kind == "message":
                if _text(message["channel"]) == self.commands_channel:
                    for event in self._command_waiters.get(_text(data), ()):
                        event.set()
                else:
                    announced = json.loads(data)
                    for queue in self._session_waiters.get(announced["session_id"], ()):
                        queue.put_nowait(announced["run_id"])

    def _wake_all(self) -> None:
        for events in self._command_waiters.values():
            for event in events:
                event.set()
        for queues in self._session_waiters.values():
            for queue in queues:
                queue.put_nowait(None)


def _discard(waiters: dict[str, set[Any]], key: str, waiter: Any) -> None:
    group = waiters.get(key)
    if group is not None:
        group.discard(waiter)
        if not group:
            del waiters[key]
