"""A real Rillet server in a subprocess, bound to an ephemeral port, for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

READY_TIMEOUT_S = 30.0


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    url: str
    env: dict[str, str]
    log_path: Path
    lines: list[str] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/ws"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def start_server(tmp_path: Path, *args: str, **env: str) -> ServerProcess:
    """Start `rillet serve --port 0` with `RILLET_*` settings given as keyword arguments
    (`database_url=...` becomes `RILLET_DATABASE_URL`), and wait until it is ready."""
    full_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RILLET_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_API"))
    }
    full_env.setdefault("RILLET_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'rillet.db'}")
    for key, value in env.items():
        full_env[f"RILLET_{key.upper()}"] = value
    full_env["PYTHONUNBUFFERED"] = "1"
    log_path = tmp_path / f"server-{time.monotonic_ns()}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rillet",
                "serve",
                "--port",
                "0",
                "--log-level",
                "warning",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            env=full_env,
            text=True,
            cwd=tmp_path,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        raise RuntimeError(f"server did not start: {line!r}\n{log_path.read_text()}")
    url = line.strip().rsplit(" ", 1)[-1]
    server = ServerProcess(proc=proc, url=url, env=full_env, log_path=log_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server never became ready\n{server.log()}")


async def wait_for(predicate: object, timeout: float = 10.0) -> None:
    """Poll an async predicate until it is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def saved_messages(server: ServerProcess, key: str | None, session_id: str) -> list[dict[str, Any]]:
    """The session's saved UI messages, through the real REST API."""
    headers = {"authorization": f"Bearer {key}"} if key else {}
    response = httpx.get(f"{server.url}/v1/sessions/{session_id}/messages", headers=headers)
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def saved_text(message: dict[str, Any]) -> str:
    """The text parts of a saved message, joined."""
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")
