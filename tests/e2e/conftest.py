"""Fixtures that start real Rillet servers and make API keys with the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess, start_server


def create_key(server: ServerProcess, user: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rillet", "keys", "create", "--user", user],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One API-key server for the module (SQLite, in-memory streams)."""
    tmp: Path = tmp_path_factory.mktemp("server")
    proc = start_server(tmp, auth_mode="api_key", messages_per_minute="1000")
    yield proc
    proc.stop()


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
