"""A private `redis-server` for the `rillet (redis)` row, and what it counts.

The row gets a Redis of its own (a free port, no persistence, in the row's scratch directory), so
the counters read from `INFO` before and after a scenario are Rillet's alone: commands processed
(including the commands Rillet's Lua scripts run inside Redis), script calls, and the CPU time
of the Redis process, which `srv CPU` (the Rillet process tree) does not include.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RedisCounters:
    """Cumulative counters of one Redis server."""

    commands: int
    """`total_commands_processed`: every command, also those run inside scripts."""
    script_calls: int
    """`EVALSHA` + `EVAL` calls (each one round trip from Rillet)."""
    cpu_s: float
    """User + system CPU seconds of the Redis process."""

    def __sub__(self, other: RedisCounters) -> RedisCounters:
        return RedisCounters(
            self.commands - other.commands,
            self.script_calls - other.script_calls,
            self.cpu_s - other.cpu_s,
        )


class PrivateRedis:
    """`redis-server` on a free loopback port; `stop` removes it and its data."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (`make services` starts one)")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(directory)]
        self._proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if self._client.ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self._proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)

    def counters(self) -> RedisCounters:
        stats = self._client.info("stats")
        commands = self._client.info("commandstats")
        cpu = self._client.info("cpu")
        scripts = sum(
            int(commands.get(name, {}).get("calls", 0))
            for name in ("cmdstat_evalsha", "cmdstat_eval")
        )
        return RedisCounters(
            commands=int(stats["total_commands_processed"]),
            script_calls=scripts,
            cpu_s=float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        )

    def stop(self) -> None:
        self._client.close()
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
