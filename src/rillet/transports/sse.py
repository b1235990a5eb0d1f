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
from typing import Any

from rillet.errors import ProtocolError
from rillet.events import RunEvent

KEEP_ALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"
"""The last line of the OpenAI and AI SDK streams."""


def data_line(data: Any) -> bytes:
    """One `data: <json>` event, the framing the OpenAI, AI SDK and AG-UI streams share."""
    return (
        b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"
    )


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
    `interval_s`. Chunks that arrived while the previous one was being sent go out together.

    A producer task fills a buffer; the consumer sleeps on one event that a chunk or a timer
    sets. A timer handle per wait costs far less than `asyncio.wait_for` (a task per chunk).
    """
    loop = asyncio.get_running_loop()
    buffer: list[bytes] = []
    wake = asyncio.Event()
    finished = False

    async def pump() -> None:
        nonlocal finished
        try:
            async for chunk in chunks:
                buffer.append(chunk)
                wake.set()
        finally:
            finished = True
            wake.set()

    task = asyncio.create_task(pump())
    try:
        while True:
            if not buffer and not finished:
                timer = loop.call_later(interval_s, wake.set)
                await wake.wait()
                timer.cancel()
            wake.clear()
            if buffer:
                out = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                buffer.clear()
                yield out
            elif finished:
                break
            else:
                yield keepalive
        await task  # re-raise what the producer raised
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
