"""`StreamBackend` on Redis, so that any number of processes on any number of machines share runs.

Each run's log is a Redis stream whose entry ids are the event seqs (`<seq>-0`). Appends are
grouped and pipelined (`redis_appends`) into one Lua script call that checks fence, seq and end,
then `XADD`s with `MAXLEN`; reading from a seq is `XREAD BLOCK` from `<seq>-0`. A run's events
are also kept in this process while it runs here, so the subscribers on its own node (the usual
case: the client that sent the message) read them without a Redis round trip; subscribers
elsewhere read Redis. Commands go to a list per run plus a notice on one pub/sub channel, so a
command sent before the run listened is still seen; runs that start are announced on another
channel. Session activity and leases are Lua scripts (`redis_scripts`). Every key and channel
starts with the configured prefix. Redis errors become `StreamError` (`LeaseLostError` for a
stale fence) at this boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError, ResponseError

from rillet.errors import LeaseLostError, ResumeExpiredError, StreamError
from rillet.events import RunEvent, event_from_dict
from rillet.streams import redis_scripts as lua
from rillet.streams.base import Command
from rillet.streams.redis_appends import AppendGroups, OwnLog, follow
from rillet.streams.redis_notices import Notices

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAXLEN = 100_000
"""Entries a run's stream keeps at most (`MAXLEN ~`); coalescing keeps real runs far below."""
KEEP_S = 86_400
"""Safety TTL of a log that never ends (its whole deployment died); `expire` shortens it."""
BLOCK_MS = 5_000
"""How long one `XREAD BLOCK` waits before the reader checks that the log still exists."""
POOL_SIZE = 32
"""Connections for commands other than blocking reads (appends need one: they are grouped)."""
RETRY_S = 5.0
"""How long a reader keeps retrying a failing Redis before it gives up with `StreamError`."""


def _key(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisBackend:
    """Event logs, commands, session activity and leases shared through one Redis."""

    def __init__(self, url: str, prefix: str = "rillet:") -> None:
        self.prefix = prefix
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2)
        # Commands share a bounded pool (a burst waits for a connection rather than opening
        # hundreds); each blocked `XREAD` holds a connection of its own, from a second pool.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=10,
            socket_connect_timeout=3,
            socket_timeout=5,
            retry=retry,
        )
        self._redis = Redis(connection_pool=pool)
        self._reader = Redis.from_url(
            url,
            max_connections=100_000,
            socket_connect_timeout=3,
            socket_timeout=BLOCK_MS / 1000 + 5,
            retry=retry,
        )
        # Pub/sub waits for messages as long as it likes, so its socket has no read timeout.
        self._notices = Notices(
            Redis.from_url(url, socket_connect_timeout=3, socket_timeout=None, retry=retry),
            prefix,
        )
        self._scripts = {
            name: self._redis.register_script(getattr(lua, name))
            for name in (
                "APPEND",
                "CLAIM",
                "CLAIM_OR_ENQUEUE",
                "RELEASE",
                "ACQUIRE_LEASE",
                "RENEW_LEASES",
                "RELEASE_LEASE",
                "TAKE_EXPIRED",
            )
        }
        # Logs of runs this process produces, for its own subscribers (see the module docstring).
        self._own: dict[str, OwnLog] = {}
        self._appends = AppendGroups(
            lambda keys, args: self._script("APPEND", keys, args),
            prefix,
            MAXLEN,
            KEEP_S,
            self._own,
        )

    @property
    def shared(self) -> bool:
        return True

    # --- keys and plumbing ----------------------------------------------------------------

    def _run_key(self, run_id: str, part: str) -> str:
        return f"{self.prefix}run:{run_id}:{part}"

    def _session_key(self, session_id: str, part: str) -> str:
        return f"{self.prefix}session:{session_id}:{part}"

    async def _call(self, what: str, operation: Awaitable[T]) -> T:
        """Await a Redis operation; its errors become Rillet's."""
        try:
            return await operation
        except ResponseError as exc:
            if str(exc).startswith("FENCED"):
                raise LeaseLostError(f"{what}: {exc}") from exc
            raise StreamError(f"{what}: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise StreamError(f"{what}: Redis failed: {exc}") from exc

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._call(name.lower(), self._scripts[name](keys=keys, args=args))

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._notices.start()

    async def close(self) -> None:
        await self._appends.close()
        await self._notices.close()
        for own in self._own.values():
            own.detached = True
            own.wake()
        self._own.clear()
        await self._reader.aclose()
        await self._redis.aclose(close_connection_pool=True)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    # --- event logs -------------------------------------------------------------------------

    async def open_log(self, run_id: str) -> None:
        meta = self._run_key(run_id, "meta")
        pipe = self._redis.pipeline(transaction=True)
        pipe.hsetnx(meta, "last", 0)
        pipe.expire(meta, KEEP_S)
        await self._call("open_log", pipe.execute())

    async def append(self, event: RunEvent, fence: int | None = None) -> None:
        if event.seq == 1:
            self._own[event.run_id] = OwnLog()
        await self._appends.append(event, fence)

    def _disown(self, run_id: str) -> None:
        """Send this process's subscribers of `run_id` to Redis for what follows."""
        own = self._own.pop(run_id, None)
        if own is not None:
            own.detached = True
            own.wake()

    async def last_seq(self, run_id: str) -> int:
        raw = await self._call("last_seq", self._redis.hget(self._run_key(run_id, "meta"), "last"))
        return int(raw) if raw is not None else 0

    async def has_log(self, run_id: str) -> bool:
        exists = await self._call("has_log", self._redis.exists(self._run_key(run_id, "meta")))
        return bool(exists)

    async def read_all(self, run_id: str) -> list[RunEvent]:
        entries: Any = await self._call(
            "read_all", self._redis.xrange(self._run_key(run_id, "log"))
        )
        return [_decode(fields) for _, fields in entries]

    async def subscribe(self, run_id: str, after: int = 0) -> AsyncIterator[RunEvent]:
        own = self._own.get(run_id)
        if own is not None:
            async for event in follow(own, after):
                yield event
                after = event.seq
            if own.finished:
                return
        key, last = self._run_key(run_id, "log"), max(after, 0)
        if await self._ended_by(run_id, last):
            return
        while True:
            reply = await self._read(run_id, key, last)
            if reply is None:
                if await self._ended_by(run_id, last):
                    return
                continue
            for entry_id, fields in reply:
                seq = int(_key(entry_id).split("-", 1)[0])
                if seq != last + 1:
                    raise ResumeExpiredError(f"events after seq {last} of run {run_id} are gone")
                last = seq
                event = _decode(fields)
                yield event
                if event.kind == "run.finished":
                    return

    async def _ended_by(self, run_id: str, seq: int) -> bool:
        """True when the log has finished at or before `seq`; `ResumeExpiredError` if it is gone."""
        raw = await self._call(
            "subscribe", self._redis.hmget(self._run_key(run_id, "meta"), "last", "done")
        )
        if raw[0] is None:
            raise ResumeExpiredError(f"the events of run {run_id} are no longer available")
        return raw[1] == b"1" and int(raw[0]) <= seq

    async def _read(self, run_id: str, key: str, last: int) -> list[Any] | None:
        """One `XREAD BLOCK` after seq `last`; retries Redis for up to `RETRY_S`."""
        waited = 0.0
        while True:
            try:
                reply: Any = await self._reader.xread(
                    {key: f"{last}-0"}, count=1000, block=BLOCK_MS
                )
            except (RedisError, OSError) as exc:
                if waited >= RETRY_S:
                    raise StreamError(f"reading run {run_id}: Redis failed: {exc}") from exc
                await asyncio.sleep(0.5)
                waited += 0.5
                continue
            if not reply:
                return None
            entries: list[Any] = reply[0][1]
            return entries

    async def expire(self, run_id: str, after_s: float) -> None:
        ttl_ms = _ms(after_s)
        pipe = self._redis.pipeline(transaction=False)
        for part in ("meta", "log", "cmds"):
            pipe.pexpire(self._run_key(run_id, part), ttl_ms)
        await self._call("expire", pipe.execute())
        self._appends.forget(run_id)
        self._disown(run_id)

    # --- commands ---------------------------------------------------------------------------

    async def send_command(self, run_id: str, command: Command) -> None:
        key = self._run_key(run_id, "cmds")
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(command.to_dict()))
        pipe.expire(key, KEEP_S)
        pipe.publish(self._notices.commands_channel, run_id)
        await self._call("send_command", pipe.execute())

    async def commands(self, run_id: str) -> AsyncIterator[Command]:
        key, index = self._run_key(run_id, "cmds"), 0
        with self._notices.command_waiter(run_id) as wake:
            while True:
                wake.clear()
                try:
                    raw = await self._call("commands", self._redis.lrange(key, index, -1))
                except StreamError as exc:
                    logger.warning("reading the commands of run %s failed: %s", run_id, exc)
                    await asyncio.sleep(1.0)
                    continue
                index += len(raw)
                for item in raw:
                    yield Command.from_dict(json.loads(item))
                # Notices wake this at once; the timeout only bounds a notice lost to a failure.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=30)

    # --- session activity -------------------------------------------------------------------

    async def claim_session(self, session_id: str, run_id: str) -> str | None:
        active = await self._script("CLAIM", [self._session_key(session_id, "active")], [run_id])
        return _key(active) or None

    async def claim_or_enqueue(self, session_id: str, item: dict[str, Any]) -> bool:
        keys = [self._session_key(session_id, "active"), self._session_key(session_id, "queue")]
        claimed = await self._script("CLAIM_OR_ENQUEUE", keys, [item["run_id"], json.dumps(item)])
        return bool(claimed)

    async def release_session(self, session_id: str, run_id: str) -> dict[str, Any] | None:
        keys = [self._session_key(session_id, "active"), self._session_key(session_id, "queue")]
        item = await self._script("RELEASE", keys, [run_id])
        if item is None:
            return None
        following: dict[str, Any] = json.loads(item)
        return following

    async def active_run(self, session_id: str) -> str | None:
        raw = await self._call(
            "active_run", self._redis.get(self._session_key(session_id, "active"))
        )
        return None if raw is None else _key(raw)

    async def announce_run(self, session_id: str, run_id: str) -> None:
        notice = json.dumps({"session_id": session_id, "run_id": run_id})
        await self._call("announce_run", self._redis.publish(self._notices.runs_channel, notice))

    async def session_runs(self, session_id: str) -> AsyncIterator[str]:
        with self._notices.session_queue(session_id) as queue:
            queue.put_nowait(None)  # subscribed first, so the active run read now is not missed
            while True:
                run_id = await queue.get()
                if run_id is None:
                    try:
                        run_id = await self.active_run(session_id)
                    except StreamError as exc:
                        # Redis is away; reconnecting wakes every watcher to look again.
                        logger.warning("watching session %s: %s", session_id, exc)
                        continue
                if run_id is not None:
                    yield run_id

    # --- leases -----------------------------------------------------------------------------

    @property
    def _leases_key(self) -> str:
        return f"{self.prefix}leases"

    def _lease_keys(self, run_id: str) -> list[str]:
        return [self._run_key(run_id, "meta"), self._run_key(run_id, "lease"), self._leases_key]

    async def acquire_lease(self, run_id: str, ttl_s: float) -> int:
        args = [run_id, _ms(ttl_s), KEEP_S]
        return int(await self._script("ACQUIRE_LEASE", self._lease_keys(run_id), args))

    async def renew_leases(self, leases: dict[str, int], ttl_s: float) -> list[str]:
        if not leases:
            return []
        args: list[Any] = [self.prefix, _ms(ttl_s)]
        for run_id, fence in leases.items():
            args += [run_id, fence]
        lost = await self._script("RENEW_LEASES", [self._leases_key], args)
        return [_key(run_id) for run_id in lost]

    async def release_lease(self, run_id: str, fence: int) -> None:
        await self._script("RELEASE_LEASE", self._lease_keys(run_id), [run_id, fence])

    async def take_expired_leases(self, ttl_s: float, limit: int = 100) -> list[tuple[str, int]]:
        args = [self.prefix, _ms(ttl_s), limit, KEEP_S]
        won = await self._script("TAKE_EXPIRED", [self._leases_key], args)
        return [(_key(won[i]), int(won[i + 1])) for i in range(0, len(won), 2)]


def _decode(fields: dict[bytes, bytes]) -> RunEvent:
    return event_from_dict(json.loads(fields[b"e"]))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
