"""Serving Rillet: Uvicorn with a graceful drain on SIGTERM, and `--workers N` processes.

Uvicorn alone, on SIGTERM, stops listening, then waits for open connections to end before the
app's lifespan shutdown runs; WebSockets get 1012 and the runs are cut at once. `RilletServer`
drains first instead (DESIGN.md "Runs"): it stops listening, refuses new messages, closes every
WebSocket with 1001 so its client reconnects to another node, lets runs finish until
`drain_timeout_s`, and interrupts the rest (their logs end `interrupted`, partial text saved);
only then does Uvicorn's own shutdown go on. With `workers > 1` a small supervisor starts that
many server processes on the one listening socket the parent bound, passes SIGTERM and SIGINT on
to them, and restarts a worker that dies.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn
from fastapi import FastAPI

from rillet.server.context import Rillet
from rillet.settings import Settings

logger = logging.getLogger(__name__)

GRACE_AFTER_DRAIN_S = 5.0
"""What Uvicorn still gives other connections (HTTP streams) once the runs have ended."""
FAST_FAIL_S = 10.0
"""A worker that dies this soon after it started is broken: the supervisor gives up."""


async def drain(rillet: Rillet) -> None:
    """Refuse new messages, send WebSocket clients elsewhere, end the runs (see module doc)."""
    runs = rillet.runs
    runs.stop_accepting()
    sockets = list(rillet.sockets)
    logger.info("draining: %d WebSockets, %d runs", len(sockets), runs.active_runs)
    await asyncio.gather(*(conn.going_away() for conn in sockets), return_exceptions=True)
    await runs.drain(rillet.settings.drain_timeout_s)


class RilletServer(uvicorn.Server):
    """`uvicorn.Server` that drains the Rillet app before it shuts down."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop listening before anything else
        for sock in sockets or []:
            sock.close()
        rillet: Rillet | None = getattr(self._app.state, "rillet", None)
        if rillet is not None and not self.force_exit:
            await drain(rillet)
        await super().shutdown(sockets)


def serve_one(settings: Settings, sock: socket.socket, log_level: str) -> None:
    """Serve on `sock` in this process until SIGTERM or SIGINT (then drain)."""
    from rillet.server.app import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_interval_s,
        timeout_graceful_shutdown=int(GRACE_AFTER_DRAIN_S),
        access_log=False,
    )
    RilletServer(config, app).run(sockets=[sock])


def _worker(values: dict[str, Any], sock: socket.socket, log_level: str) -> None:
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    serve_one(Settings(**values), sock, log_level)


def serve_workers(settings: Settings, sock: socket.socket, log_level: str, workers: int) -> int:
    """Run `workers` server processes on `sock` until SIGTERM/SIGINT; returns an exit code."""
    context = multiprocessing.get_context("spawn")
    values = settings.model_dump()
    stop = threading.Event()

    def start() -> tuple[BaseProcess, float]:
        process = context.Process(
            target=_worker, args=(values, sock, log_level), name="rillet-worker", daemon=False
        )
        process.start()
        return process, time.monotonic()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    processes = [start() for _ in range(workers)]
    code = 0
    try:
        while not stop.wait(0.5):
            for index, (process, started) in enumerate(processes):
                if process.is_alive():
                    continue
                if time.monotonic() - started < FAST_FAIL_S:
                    logger.error("worker %s exited at start (%s)", process.pid, process.exitcode)
                    code = 1
                    stop.set()
                    break
                logger.warning(
                    "worker %s died (%s); starting another", process.pid, process.exitcode
                )
                processes[index] = start()
    finally:
        for process, _ in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + settings.drain_timeout_s + 30
        for process, _ in processes:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
