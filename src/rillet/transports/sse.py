"""Server-sent events of run events in the schema of PROTOCOL.md section 1
(`GET /v1/runs/{id}/events`), with keep-alive comments.

Each event is sent as `id: <seq>`, `event: <kind>` and `data: <json>`, so a browser
`EventSource` resumes by itself with `Last-Event-ID`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from rillet.errors import ProtocolError
from rillet.events import RunEvent

KEEP_ALIVE = b": keep-alive\n\n"


def encode_event(event: RunEvent) -> bytes:
    data = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode()


def encode_error(error: ProtocolError) -> bytes:
    data = json.dumps({"code": error.code, "message": error.message, "retryable": error.retryable})
    return f"event: error\ndata: {data}\n\n".encode()


async def with_keepalive(
    chunks: AsyncIterator[bytes], interval_s: float, keepalive: bytes = KEEP_ALIVE
) -> AsyncIterator[bytes]:
    """`chunks`, with `keepalive` (an SSE comment by default) whenever nothing was sent for
    `interval_s`."""
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for chunk in chunks:
                await queue.put(chunk)
        finally:
            await queue.put(None)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(queue.get(), interval_s)
            except TimeoutError:
                yield keepalive
                continue
            if chunk is None:
                break
            yield chunk
        await task  # re-raise what the producer raised
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
