"""Fixtures that start real Rillet servers and make API keys with the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.redis import REDIS_URL, drop_prefix_sync, unique_prefix
from tests.support.server import ServerProcess, start_server
from tests.support.wsclient import OPEN_CLIENTS

BACKENDS = ["memory", "redis"]
"""Stream backends the core suite runs against (`server` is parametrized over them)."""


def backend_env(backend: str) -> dict[str, str]:
    """Settings that select `backend`; Redis gets a key prefix of the server's own."""
    if backend == "memory":
        return {}
    return {"redis_url": REDIS_URL, "redis_prefix": unique_prefix()}


def stop_server(proc: ServerProcess) -> None:
    """Stop a server and delete the Redis keys it made (under its own prefix)."""
    proc.stop()
    prefix = proc.env.get("RILLET_REDIS_PREFIX")
    if prefix:
        drop_prefix_sync(proc.env["RILLET_REDIS_URL"], prefix)


def create_key(server: ServerProcess, user: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rillet", "keys", "create", "--user", user],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One API-key server for the module (SQLite), once per stream backend."""
    tmp: Path = tmp_path_factory.mktemp(f"server-{request.param}")
    proc = start_server(
        tmp, auth_mode="api_key", messages_per_minute="1000", **backend_env(request.param)
    )
    yield proc
    stop_server(proc)


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> str:
    return create_key(server, "alice")


@pytest.fixture(scope="module")
def bob(server: ServerProcess) -> str:
    return create_key(server, "bob")


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server as `make run` starts it: auth `none` on loopback, defaults otherwise."""
    proc = start_server(tmp_path_factory.mktemp("local"))
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
async def close_clients() -> AsyncIterator[None]:
    """Close the WebSocket clients a test left open (a failed assertion skips its own close),
    so its sockets cannot surface as warnings in the next test."""
    yield
    for client in list(OPEN_CLIENTS):
        await client.close()
