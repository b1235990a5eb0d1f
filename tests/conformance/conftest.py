"""Fixtures for the conformance tests: the pinned client libraries (`npm ci` from the committed
lock file, once per session), a real Rillet server with an API key, a fake model provider that
fails every request (for errors that happen mid-stream), and `run_node`, which runs one of the
Node scripts here against that server and returns the JSON it prints. A client that cannot be
installed or run fails its tests; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.support.fake_openai import fake_openai_server
from tests.support.npm import install_pinned
from tests.support.server import ServerProcess, start_server

HERE = Path(__file__).resolve().parent
NODE_TIMEOUT_S = 120
ERROR_MODEL = "openai:gpt-4o"
"""A model served by the failing fake provider."""


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """The directory whose `node_modules` holds the pinned clients."""
    return install_pinned(HERE)


@pytest.fixture(scope="module")
def failing_provider() -> Iterator[str]:
    """The base URL of a fake OpenAI-compatible provider whose every request fails (HTTP 400)."""
    ready = threading.Event()
    stop = threading.Event()
    found: dict[str, str] = {}

    async def serve() -> None:
        async with fake_openai_server([]) as (base_url, _):
            found["url"] = base_url
            ready.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="failing-provider")
    thread.start()
    try:
        if not ready.wait(15):
            pytest.fail("the fake provider did not start")
        yield found["url"]
    finally:
        stop.set()
        thread.join(15)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, failing_provider: str
) -> Iterator[ServerProcess]:
    proc = start_server(
        tmp_path_factory.mktemp("conformance"),
        auth_mode="api_key",
        messages_per_minute="10000",
        openai_base_url=f"{failing_provider}/v1",
        openai_api_key="sk-test",
        openai_compatible_models='["gpt-4o"]',
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def api_key(server: ServerProcess) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "rillet", "keys", "create", "--user", "conformance"],
        env=server.env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


class RunNode(Protocol):
    def __call__(self, script: str, *args: str) -> dict[str, Any]: ...


@pytest.fixture
def run_node(node_clients: Path, server: ServerProcess, api_key: str) -> RunNode:
    """Run `node <script> <args>` against the server; the JSON object it printed."""

    def run(script: str, *args: str) -> dict[str, Any]:
        env = {
            **os.environ,
            "RILLET_URL": server.url,
            "RILLET_KEY": api_key,
            "RILLET_ERROR_MODEL": ERROR_MODEL,
        }
        done = subprocess.run(
            ["node", script, *args],
            cwd=node_clients,
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
        )
        if done.returncode != 0 or not done.stdout.strip():
            pytest.fail(
                f"node {script} {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
            )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    return run
