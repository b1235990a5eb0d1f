"""Redis for tests: the shared local server (`RILLET_TEST_REDIS_URL`, default 127.0.0.1:6379) with
a unique key prefix per test, and private `redis-server` processes on a free port for tests that
stop and restart Redis. An unreachable Redis raises: tests that need it fail, never skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import redis
import redis.asyncio as aioredis

REDIS_URL = os.environ.get("RILLET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
"""The shared test Redis; tests isolate themselves by key prefix, never by flushing it."""


def unique_prefix() -> str:
    return f"rillet-test:{uuid.uuid4().hex[:12]}:"


async def drop_prefix(url: str, prefix: str) -> None:
    """Deletes every key under `prefix` (what a test left behind)."""
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def drop_prefix_sync(url: str, prefix: str) -> None:
    """`drop_prefix` for synchronous fixtures."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; there is a small race)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A `redis-server` of this test's own, without persistence: a restart loses every key."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = directory
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make services installs it)")
        self._proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with redis.Redis(port=self.port, socket_connect_timeout=1) as client:
                    if client.ping():
                        return
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None
