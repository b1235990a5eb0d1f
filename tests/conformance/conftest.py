"""Fixtures for the conformance tests: the pinned client libraries (`npm ci` from the committed
lock file, once per session), a real Rillet server with an API key, a fake model provider that
fails every request (for errors that happen mid-stream), and `run_node`, which runs one of the
Node scripts here against that server and returns the JSON it prints. A client that cannot be
installed or run fails its tests; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.support.fake_openai import fake_openai_server
from tests.support.server import ServerProcess, start_server

HERE = Path(__file__).resolve().parent
NODE_TIMEOUT_S = 120
ERROR_MODEL = "openai:gpt-4o"
"""A model served by the failing fake provider."""


def _installed() -> bool:
    """True when `node_modules` holds exactly what the lock file pins (npm's hidden lock)."""
    hidden = HERE / "node_modules" / ".package-lock.json"
    if not hidden.exists():
        return False
    wanted = json.loads((HERE / "package-lock.json").read_text())["packages"]
    have = json.loads(hidden.read_text())["packages"]
    return {k: v for k, v in wanted.items() if k} == have


@pytest.fixture(scope="session")
def node_clients() -> Path:
    """The directory whose `node_modules` holds the pinned clients."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; the conformance tests need Node 20+ and npm")
    # One installer at a time, should several pytest workers start together.
    with (Path(tempfile.gettempdir()) / "rillet-npm-ci.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed():
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=HERE,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci failed in {HERE}:\n{done.stdout}\n{done.stderr}")
    return HERE


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
