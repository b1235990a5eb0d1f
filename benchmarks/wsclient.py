"""The benchmark's WebSocket client: one connection per stream, timed with as little work as it can.

`open_connection` connects with the `websockets` library and completes the `init` / `ready`
handshake; `run_stream` sends one `message` for the `bench` model and reads frames until `status`
END. Per frame the client only decodes the JSON, keeps the `token` text and stamps the arrival
time; joining and checking the text (it must equal `w1 w2 ... wN` exactly) and computing the
first-token time and the gaps between token frames happen after the stream ends. The client shares
the machine's cores with the server, so every cycle it spends here is one the server cannot use.
"""

from __future__ import annotations

import functools
import itertools
import json
import uuid
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect

Compression = Literal["deflate", "none"]


class StreamError(RuntimeError):
    """A stream was refused, broken, or delivered other text than the `bench` model's words."""

    def __init__(self, message: str, frame: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.frame = frame
        """The `error` frame the server sent, when that is what went wrong."""


@dataclass(frozen=True)
class StreamResult:
    """What one stream delivered and when (times from `time.perf_counter`)."""

    words: int
    frames: int
    sent_at: float
    token_times: list[float]
    ended_at: float

    @property
    def ttft_s(self) -> float:
        """Seconds from sending `message` to the first `token` frame."""
        return self.token_times[0] - self.sent_at

    def gaps_s(self) -> list[float]:
        """Seconds between consecutive `token` frames."""
        times = self.token_times
        return [later - earlier for earlier, later in itertools.pairwise(times)]


@dataclass
class StreamProgress:
    """How far a stream has got, readable while it runs (to tell a hung stream's state)."""

    frames: int = 0
    tokens: int = 0
    last_type: str = ""


@functools.lru_cache(maxsize=16)
def expected_text(words: int) -> str:
    """The exact text the `bench` model streams for `words=N`."""
    return " ".join(f"w{index}" for index in range(1, words + 1))


async def open_connection(url: str, compression: Compression = "deflate") -> ClientConnection:
    """Connect to `url` and finish the `init` / `ready` handshake."""
    ws = await connect(
        url,
        compression="deflate" if compression == "deflate" else None,
        ping_interval=None,
        open_timeout=60,
        max_size=2**24,
    )
    try:
        await ws.send(json.dumps({"type": "init"}))
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] == "ready":
                return ws
            if frame["type"] == "error":
                raise StreamError(f"init refused: {frame}", frame)
    except BaseException:
        await ws.close()
        raise


async def run_stream(
    ws: ClientConnection, words: int, rate: float, progress: StreamProgress | None = None
) -> StreamResult:
    """Ask the `bench` model for `words` words at `rate` words/s and read them until END.

    `progress`, when given, is updated per frame so a caller can see where a hung stream stopped.
    """
    message = {
        "type": "message",
        "id": f"bench-{uuid.uuid4().hex}",
        "query": f"words={words} rate={rate:g}",
        "model": "bench",
        "session_id": None,
        "mode": "ask",
    }
    texts: list[str] = []
    times: list[float] = []
    progress = progress if progress is not None else StreamProgress()
    loads = json.loads
    sent_at = perf_counter()
    await ws.send(json.dumps(message))
    while True:
        frame = loads(await ws.recv())
        kind = frame["type"]
        progress.frames += 1
        progress.last_type = kind
        if kind == "token":
            progress.tokens += 1
            times.append(perf_counter())
            texts.append(frame["data"]["text"])
        elif kind == "status" and frame["data"]["status"] == "END":
            ended_at = perf_counter()
            break
        elif kind == "error":
            raise StreamError(f"error frame: {frame}", frame)
    text = "".join(texts)
    if text != expected_text(words):
        reason = frame["data"].get("reason")
        raise StreamError(
            f"stream delivered {len(text.split())} words ({len(text)} chars) instead of {words}; "
            f"END reason {reason!r}; text starts {text[:60]!r}, ends {text[-60:]!r}"
        )
    return StreamResult(words, len(times), sent_at, times, ended_at)
