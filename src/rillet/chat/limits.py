"""Per-user message rate limits, on the `limits` library.

A moving window of `messages_per_minute` per user. In-process counters by default; with
`redis_url` set the counts live in Redis (under `redis_prefix`), so a user's limit holds across
every node (`make_limiter`).
"""

from __future__ import annotations

from typing import Any

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError as LimitsStorageError
from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from rillet.errors import RateLimitedError, StreamError
from rillet.settings import Settings


class MessageRateLimiter:
    """Counts the messages each user sends; refuses past the limit."""

    def __init__(
        self, per_minute: int, storage: Any | None = None, pool: ConnectionPool | None = None
    ) -> None:
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(storage or MemoryStorage())
        self._pool = pool

    async def hit(self, user_id: str) -> None:
        """Count one message; raises `RateLimitedError` when over the limit (`StreamError` when
        the shared counters cannot be reached)."""
        try:
            allowed = await self._limiter.hit(self._item, "messages", user_id)
        except (LimitsStorageError, RedisError, OSError) as exc:
            raise StreamError(f"the rate-limit counters failed: {exc}") from exc
        if not allowed:
            raise RateLimitedError(
                f"too many messages: at most {self._item.amount} per minute; try again shortly"
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()


def make_limiter(settings: Settings) -> MessageRateLimiter:
    """The limiter for this configuration: shared through Redis when `redis_url` is set."""
    if not settings.redis_url:
        return MessageRateLimiter(settings.messages_per_minute)
    # Retries carry a command over a connection Redis closed (a restart), as the streams do.
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2)
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=16,
        timeout=10,
        socket_connect_timeout=3,
        socket_timeout=5,
        retry=retry,
    )
    # `limits` types its options as scalars, but hands `connection_pool` to redis-py as is.
    options: dict[str, Any] = {"connection_pool": pool}
    storage = RedisStorage(
        settings.redis_url,
        implementation="redispy",
        key_prefix=f"{settings.redis_prefix}limits",
        wrap_exceptions=True,
        **options,
    )
    return MessageRateLimiter(settings.messages_per_minute, storage, pool)
