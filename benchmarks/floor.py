"""The transport floor: the least a WebSocket server must do to stream the `bench` words.

A bare Starlette app served by uvicorn with the same uvicorn settings as `rillet serve` (default
WebSocket implementation, 1 MiB frame limit, 20 s pings, no access log). It speaks just enough of
PROTOCOL.md section 2 for the benchmark client: `init` is answered with `ready`, and `message`
with `words=N rate=R` streams `w1`, ` w2`, ... ` wN` as one `token` frame per word in Rillet's
frame shape, paced at R words per second against a monotonic clock (R=0: no pause), between
`status` START and END frames. No storage, no model, no coalescing: whatever Rillet costs above
this is Rillet's own. Run it as `python benchmarks/floor.py --port 0`; like `rillet serve` it
prints `floor: listening on http://HOST:PORT` once bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
import uuid
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

MAX_FRAME_BYTES = 1_048_576
"""Same as Rillet's default `max_frame_bytes`."""
PING_INTERVAL_S = 20.0
"""Same as Rillet's default `ping_interval_s`."""


def _frame(
    kind: str,
    data: dict[str, Any],
    session_id: str | None = None,
    run_id: str | None = None,
    seq: int | None = None,
) -> str:
    out: dict[str, Any] = {"type": kind, "session_id": session_id, "run_id": run_id}
    if seq is not None:
        out["seq"] = seq
    out["data"] = data
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def _parse_query(query: str) -> tuple[int, float]:
    fields = dict(token.partition("=")[::2] for token in query.split())
    return int(fields["words"]), float(fields.get("rate", "0"))


async def _stream(websocket: WebSocket, query: str) -> None:
    words, rate = _parse_query(query)
    session_id, run_id = uuid.uuid4().hex, uuid.uuid4().hex
    await websocket.send_text(
        _frame("session", {"session_id": session_id, "title": None, "created": True}, session_id)
    )
    await websocket.send_text(_frame("status", {"status": "START"}, session_id, run_id, 1))
    interval = 1.0 / rate if rate > 0 else 0.0
    start = time.monotonic()
    for index in range(1, words + 1):
        if interval:
            # Word i is due at start + (i - 1) / rate, so lateness never accumulates.
            delay = start + (index - 1) * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        text = f"w{index}" if index == 1 else f" w{index}"
        await websocket.send_text(_frame("token", {"text": text}, session_id, run_id, index + 1))
    end = {"status": "END", "reason": "completed", "isComplete": True}
    await websocket.send_text(_frame("status", end, session_id, run_id, words + 2))


async def ws_endpoint(websocket: WebSocket) -> None:
    """Answer `init` with `ready` and stream every `message` inline."""
    await websocket.accept()
    try:
        while True:
            incoming = json.loads(await websocket.receive_text())
            kind = incoming.get("type")
            if kind == "init":
                ready = {"user_id": "floor", "connection_id": uuid.uuid4().hex, "protocol": 1}
                await websocket.send_text(_frame("ready", ready))
            elif kind == "message":
                await _stream(websocket, incoming["query"])
    except WebSocketDisconnect:
        return


async def readyz(request: Request) -> JSONResponse:
    return JSONResponse({"ready": True})


app = Starlette(routes=[Route("/readyz", readyz), WebSocketRoute("/v1/ws", ws_endpoint)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    config = uvicorn.Config(
        app,
        log_level=args.log_level,
        ws_max_size=MAX_FRAME_BYTES,
        ws_ping_interval=PING_INTERVAL_S,
        ws_ping_timeout=PING_INTERVAL_S,
        timeout_graceful_shutdown=35,
        access_log=False,
    )
    print(f"floor: listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
