"""Per-user message rate limits, on the `limits` library.

A moving window of `messages_per_minute` per user. In-process counters by default; the same
limiter takes a Redis storage when several processes must share the counts.
"""

from __future__ import annotations

from typing import Any

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from rillet.errors import RateLimitedError


class MessageRateLimiter:
    """Counts the messages each user sends; refuses past the limit."""

    def __init__(self, per_minute: int, storage: Any | None = None) -> None:
        self._item = RateLimitItemPerMinute(per_minute)
        self._limiter = MovingWindowRateLimiter(storage or MemoryStorage())

    async def hit(self, user_id: str) -> None:
        """Count one message; raises `RateLimitedError` when over the limit."""
        if not await self._limiter.hit(self._item, "messages", user_id):
            raise RateLimitedError(
                f"too many messages: at most {self._item.amount} per minute; try again shortly"
            )
