"""A thin protocol-v1 client over the real `websockets` library, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

RECV_TIMEOUT_S = 30.0


OPEN_CLIENTS: set[WsClient] = set()
"""Clients not closed yet; the e2e fixtures close what a failed test left open."""


class WsClient:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.frames: list[dict[str, Any]] = []
        OPEN_CLIENTS.add(self)

    @classmethod
    async def connect(
        cls, url: str, token: str | None = None, *, init: bool = True, **kwargs: Any
    ) -> WsClient:
        client = cls(await websockets.connect(url, max_size=None, **kwargs))
        if init:
            await client.send({"type": "init", "token": token})
            ready = await client.recv_type("ready")
            assert ready["data"]["protocol"] == 1
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(frame))

    async def recv(self, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), timeout)
        frame: dict[str, Any] = json.loads(raw)
        self.frames.append(frame)
        return frame

    async def recv_type(self, kind: str, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == kind:
                return frame

    async def message(
        self,
        query: str,
        *,
        session_id: str | None = None,
        model: str = "bench",
        client_id: str | None = None,
        mode: str = "agent",
    ) -> str:
        client_id = client_id or uuid.uuid4().hex
        await self.send(
            {
                "type": "message",
                "id": client_id,
                "query": query,
                "session_id": session_id,
                "model": model,
                "mode": mode,
            }
        )
        return client_id

    async def until_end(
        self, run_id: str | None = None, timeout: float = RECV_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """Frames up to and including the `status` END (or AWAITING_CONFIRMATION) of a run."""
        got: list[dict[str, Any]] = []
        while True:
            frame = await self.recv(timeout)
            got.append(frame)
            if (
                frame["type"] == "status"
                and frame["data"]["status"] in ("END", "AWAITING_CONFIRMATION")
                and (run_id is None or frame["run_id"] == run_id)
            ):
                return got

    async def close(self) -> None:
        OPEN_CLIENTS.discard(self)
        await self.conn.close()


def text_of(frames: list[dict[str, Any]], run_id: str | None = None) -> str:
    """The answer text carried by `token` frames (deduplicated by seq)."""
    seen: set[tuple[str, int]] = set()
    out: list[str] = []
    for frame in frames:
        if frame["type"] != "token" or (run_id is not None and frame["run_id"] != run_id):
            continue
        key = (frame["run_id"], frame["seq"])
        if key in seen:
            continue
        seen.add(key)
        out.append(frame["data"]["text"])
    return "".join(out)


def bench_text(words: int) -> str:
    return " ".join(f"w{i}" for i in range(1, words + 1))
