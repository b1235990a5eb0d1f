"""The message rate limit: per user, in process by default, shared by every node over Redis."""

from __future__ import annotations

import pytest

from rillet.chat.limits import make_limiter
from rillet.errors import RateLimitedError
from rillet.settings import Settings
from tests.support.redis import REDIS_URL, drop_prefix, unique_prefix


async def test_the_limit_is_per_user_in_one_process() -> None:
    limiter = make_limiter(Settings(messages_per_minute=2))
    await limiter.hit("ann")
    await limiter.hit("ann")
    with pytest.raises(RateLimitedError):
        await limiter.hit("ann")
    await limiter.hit("ben")
    await limiter.close()


async def test_nodes_sharing_redis_share_the_count() -> None:
    settings = Settings(messages_per_minute=3, redis_url=REDIS_URL, redis_prefix=unique_prefix())
    first, second = make_limiter(settings), make_limiter(settings)
    try:
        await first.hit("ann")
        await second.hit("ann")
        await first.hit("ann")
        with pytest.raises(RateLimitedError):
            await second.hit("ann")
        await second.hit("ben")
    finally:
        await first.close()
        await second.close()
        await drop_prefix(REDIS_URL, settings.redis_prefix)
