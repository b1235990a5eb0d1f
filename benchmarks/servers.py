"""Servers under benchmark: what to start (`ServerSpec`) and a running one (`ServerProcess`).

A benchmark row is a `ServerSpec`: a name, a command, extra environment and the transport the
client speaks to it. `ServerProcess` starts the command in its own scratch directory with a clean
environment (no provider keys, no inherited `RILLET_*`), waits for the `...: listening on
http://HOST:PORT` line the servers print once bound to their ephemeral port, polls `/readyz`, and
reads the CPU time of the process tree with psutil so a scenario can charge its server. New rows
(Rillet with Redis, an SSE transport) are new entries in `default_specs`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import httpx
import psutil  # type: ignore[import-untyped]
from redis_server import PrivateRedis

BENCH_DIR = Path(__file__).resolve().parent
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Timeout)\b.*")
LISTENING = re.compile(r"listening on (?P<url>https?://\S+)")
START_TIMEOUT_S = 60.0
_STRIPPED_ENV_PREFIXES = ("RILLET_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_")

Transport = Literal["ws", "ui"]
"""`ws`: the WebSocket protocol; `ui`: the AI SDK UI message stream (`POST /v1/chat`)."""


class ServerError(RuntimeError):
    """A server did not start, died, or misbehaved; the message ends with its log tail."""


@dataclass(frozen=True)
class ServerSpec:
    """One row of the benchmark table.

    `argv` and the values of `env` may contain `{tmp}`, replaced by the server's scratch directory
    (also its working directory).
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    transport: Transport = "ws"
    ws_path: str = "/v1/ws"
    redis: bool = False
    """Give the server a private `redis-server` (`RILLET_REDIS_URL`), whose counters
    `ServerProcess.redis` reads (`redis_server.py`)."""


def default_specs() -> list[ServerSpec]:
    """The floor first (the baseline), then every Rillet configuration to compare with it."""
    rillet_env = {
        "RILLET_DATABASE_URL": "sqlite+aiosqlite:///{tmp}/bench.db",
        # One local user opens every stream from one address: lift the per-user limits.
        "RILLET_MESSAGES_PER_MINUTE": "100000",
        "RILLET_MAX_CONNECTIONS_PER_USER": "100000",
        "RILLET_MAX_CONNECTIONS_PER_IP": "100000",
    }
    rillet_argv = (sys.executable, "-m", "rillet", "serve", "--port", "0", "--log-level", "warning")
    return [
        ServerSpec("floor", (sys.executable, str(BENCH_DIR / "floor.py"), "--port", "0")),
        ServerSpec("rillet (memory)", rillet_argv, rillet_env),
        ServerSpec(
            "rillet (redis)",
            rillet_argv,
            {**rillet_env, "RILLET_REDIS_PREFIX": "bench:"},
            redis=True,
        ),
        ServerSpec("rillet (memory) AI SDK UI", rillet_argv, rillet_env, transport="ui"),
    ]


class ServerProcess:
    """A started server; use as a context manager so it is always stopped."""

    def __init__(self, spec: ServerSpec) -> None:
        self.spec = spec
        self._tmp = tempfile.TemporaryDirectory(prefix="rillet-bench-")
        self.tmp = Path(self._tmp.name)
        self.stdout_path = self.tmp / "server.out"
        self.stderr_path = self.tmp / "server.err"
        self.base_url = ""
        self._popen: subprocess.Popen[bytes] | None = None
        self._ps: psutil.Process | None = None
        self.redis: PrivateRedis | None = None

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + self.spec.ws_path

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(_STRIPPED_ENV_PREFIXES)
        }
        env.update({key: value.format(tmp=self.tmp) for key, value in self.spec.env.items()})
        if self.spec.redis:
            self.redis = PrivateRedis(self.tmp)
            env["RILLET_REDIS_URL"] = self.redis.url
        argv = [arg.format(tmp=self.tmp) for arg in self.spec.argv]
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._popen = subprocess.Popen(
                argv, stdout=out, stderr=err, env=env, cwd=self.tmp, start_new_session=True
            )
        self._ps = psutil.Process(self._popen.pid)
        self.base_url = self._wait_for_listening()
        self._wait_for_ready()

    def _wait_for_listening(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive()
            match = LISTENING.search(self.stdout_path.read_text(errors="replace"))
            if match:
                return match["url"]
            time.sleep(0.05)
        raise ServerError(
            f"{self.spec.name}: no 'listening on' line in {START_TIMEOUT_S:g} s" + self.log_tail()
        )

    def _wait_for_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(base_url=self.base_url, timeout=5.0) as http:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    if http.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise ServerError(
            f"{self.spec.name}: /readyz not 200 in {START_TIMEOUT_S:g} s" + self.log_tail()
        )

    def check_alive(self) -> None:
        """Raise `ServerError` if the process has exited."""
        if self._popen is not None and self._popen.poll() is not None:
            raise ServerError(
                f"{self.spec.name} exited with code {self._popen.returncode}" + self.log_tail()
            )

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server and its live and reaped children so far."""
        assert self._ps is not None
        with self._ps.oneshot():
            times = self._ps.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for child in self._ps.children(recursive=True):
                try:
                    child_times = child.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += child_times.user + child_times.system
        return float(total)

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the server's stderr, as a block to append to a message."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        all_lines = text.splitlines()
        errors = Counter(
            match[0][:160] for line in all_lines if (match := _EXCEPTION_LINE.match(line))
        )
        tail = all_lines[-lines:]
        out = f"\n--- {self.spec.name} stderr: {len(all_lines)} lines"
        if errors:
            out += ", exception lines by kind:\n" + "\n".join(
                f"  {count} x {line}" for line, count in errors.most_common(10)
            )
        return out + f"\n--- last {len(tail)} lines ---\n" + "\n".join(tail)

    def stop(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        if self.redis is not None:
            self.redis.stop()
        self._tmp.cleanup()
