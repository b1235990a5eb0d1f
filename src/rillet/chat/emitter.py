"""The producer side of a run's event log: numbering, coalescing and the parts fold.

`RunEmitter` gives each event its `seq` (1, 2, 3, ... with no gaps) and appends it to the log.
Text and reasoning deltas are throttled: the first delta after a quiet period is appended at
once (so the first token is not delayed), later ones are merged until the coalescing window has
passed since the last append or the merged text reaches the size cap. Any other event first
flushes what is merged, so order is kept and no text is dropped.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

from rillet.chat.parts import PartsBuilder
from rillet.events import ReasoningDeltaEvent, RunEvent, TextDeltaEvent
from rillet.streams.base import StreamBackend

DeltaKind = Literal["text", "reasoning"]


class RunEmitter:
    """Appends one run's events to its log."""

    def __init__(
        self,
        streams: StreamBackend,
        *,
        session_id: str,
        run_id: str,
        window_s: float,
        max_chars: int,
        first_seq: int = 1,
        fence: int | None = None,
        parts: list[dict[str, Any]] | None = None,
    ) -> None:
        self._streams = streams
        self.session_id = session_id
        self.run_id = run_id
        self._window = window_s
        self._max_chars = max_chars
        self._next_seq = first_seq
        self.fence = fence
        """The run's lease fence, sent with every append (see `StreamBackend.append`)."""
        self._lock = asyncio.Lock()
        self._buffer: list[str] = []
        self._buffer_chars = 0
        self._buffer_kind: DeltaKind = "text"
        self._last_append = -1e9  # monotonic time of the last delta append
        self._timer: asyncio.TimerHandle | None = None
        self._timer_flush: asyncio.Task[None] | None = None
        self.parts = PartsBuilder(parts or ())

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    async def emit(self, event: RunEvent) -> RunEvent:
        """Flush merged deltas, then append `event` with the next seq (its own seq is ignored)."""
        async with self._lock:
            await self._flush_locked()
            return await self._append_locked(event)

    async def delta(self, kind: DeltaKind, text: str) -> None:
        """Add answer or reasoning text; it reaches the log within the coalescing window."""
        if not text:
            return
        if self._buffer and kind != self._buffer_kind:
            await self.flush()
        self._buffer_kind = kind
        self._buffer.append(text)
        self._buffer_chars += len(text)
        since = time.monotonic() - self._last_append
        if since >= self._window or self._buffer_chars >= self._max_chars:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(
                self._window - since, self._on_timer
            )

    async def flush(self) -> None:
        async with self._lock:
            await self._flush_locked()

    async def close(self) -> None:
        """Flush and stop the timer (after the last event)."""
        await self.flush()
        if self._timer_flush is not None:
            await self._timer_flush

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_flush = asyncio.create_task(self.flush())

    async def _flush_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer:
            return
        text = "".join(self._buffer)
        self._buffer.clear()
        self._buffer_chars = 0
        cls = TextDeltaEvent if self._buffer_kind == "text" else ReasoningDeltaEvent
        await self._store_locked(
            cls(session_id=self.session_id, run_id=self.run_id, seq=self._next_seq, text=text)
        )
        self._last_append = time.monotonic()

    async def _append_locked(self, event: RunEvent) -> RunEvent:
        return await self._store_locked(event.with_seq(self._next_seq))

    async def _store_locked(self, event: RunEvent) -> RunEvent:
        """Append `event`, already numbered with the next seq."""
        # Counted before the await: an append whose caller is cancelled still lands (backends
        # finish what they started), so the next event must take the next seq.
        self._next_seq += 1
        self.parts.add(event)
        await self._streams.append(event, self.fence)
        return event
