"""The benchmark's AI SDK UI message stream client: one HTTP/1.1 connection per stream, read with
as little work as the WebSocket client does per frame.

`open_connection` opens the TCP connection (outside the measured window, like the WebSocket
handshake); `run_stream` posts one `useChat` request (`POST /v1/chat`, a new chat id, the `bench`
model) and reads the chunked SSE response until `data: [DONE]`. Per `text-delta` event the
client decodes its JSON, keeps the delta and stamps the arrival time of the HTTP chunk that
carried it; checking the text and computing first-token time and gaps happen afterwards, into the
same `StreamResult` the WebSocket client returns. It speaks raw HTTP over asyncio streams because
an HTTP library would spend more client CPU per chunk than `websockets` does per frame, and the
client shares the machine with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from time import perf_counter
from urllib.parse import urlsplit

from wsclient import StreamError, StreamProgress, StreamResult, expected_text

READ_LIMIT = 2**24


@dataclass
class UIConnection:
    """An open HTTP/1.1 connection to a Rillet server."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def open_connection(base_url: str) -> UIConnection:
    """Open a TCP connection to the server at `base_url` (`http://HOST:PORT`)."""
    parts = urlsplit(base_url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"not a base URL with a port: {base_url}")
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=READ_LIMIT)
    return UIConnection(reader, writer, parts.netloc)


def _request(host: str, words: int, rate: float) -> bytes:
    body = json.dumps(
        {
            "id": f"bench-{uuid.uuid4().hex}",
            "messages": [
                {
                    "id": uuid.uuid4().hex,
                    "role": "user",
                    "parts": [{"type": "text", "text": f"words={words} rate={rate:g}"}],
                }
            ],
            "trigger": "submit-message",
            "model": "bench",
            "mode": "ask",
        }
    ).encode()
    head = (
        f"POST /v1/chat HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_head(reader: asyncio.StreamReader) -> None:
    status = await reader.readline()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if not status.startswith(b"HTTP/1.1 200"):
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        raise StreamError(f"refused: {status.decode().strip()} {body.decode(errors='replace')}")
    if headers.get("transfer-encoding") != "chunked":
        raise StreamError(f"expected a chunked response, got headers {headers}")


async def run_stream(
    conn: UIConnection, words: int, rate: float, state: StreamProgress | None = None
) -> StreamResult:
    """Ask the `bench` model for `words` words at `rate` words/s and read them until `[DONE]`.
    `state` (SSE events for `frames`, `text-delta`s for `tokens`) is kept up to date."""
    state = state or StreamProgress()
    reader = conn.reader
    texts: list[str] = []
    times: list[float] = []
    loads = json.loads
    pending = b""
    done = False
    sent_at = perf_counter()
    conn.writer.write(_request(conn.host, words, rate))
    await _read_head(reader)
    while not done:
        size = int(await reader.readline(), 16)
        if size == 0:
            break
        data = await reader.readexactly(size + 2)
        now = perf_counter()
        pending += data[:-2]
        *events, pending = pending.split(b"\n\n")
        state.frames += len(events)
        for event in events:
            if event.startswith(b'data: {"type":"text-delta"'):
                times.append(now)
                texts.append(loads(event[6:])["delta"])
                state.tokens += 1
            elif event == b"data: [DONE]":
                done = True
            elif event.startswith(b'data: {"type":"error"'):
                raise StreamError(f"error chunk: {event.decode()}")
        state.last_type = events[-1][:40].decode(errors="replace") if events else state.last_type
    ended_at = perf_counter()
    text = "".join(texts)
    if not done or text != expected_text(words):
        raise StreamError(
            f"stream delivered {len(text.split())} words ({len(text)} chars) instead of {words} "
            f"({'with' if done else 'without'} [DONE]); text ends {text[-60:]!r}"
        )
    return StreamResult(words, len(times), sent_at, times, ended_at)
