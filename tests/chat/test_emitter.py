"""The run emitter: gap-free seqs, coalescing that never drops or reorders text."""

from __future__ import annotations

import asyncio
import random

from rillet.chat.emitter import RunEmitter
from rillet.events import RunStartedEvent, TextDeltaEvent, ToolStartedEvent
from rillet.streams.memory import MemoryBackend


def make(backend: MemoryBackend, window_ms: float = 20.0, cap: int = 4096) -> RunEmitter:
    return RunEmitter(backend, session_id="s", run_id="r", window_s=window_ms / 1000, max_chars=cap)


def started() -> RunStartedEvent:
    return RunStartedEvent(
        session_id="s", run_id="r", seq=0, message_id="m", model="bench", mode="ask"
    )


async def test_seqs_are_gap_free_and_text_is_kept_in_order() -> None:
    backend = MemoryBackend()
    emitter = make(backend)
    await emitter.emit(started())
    rng = random.Random(7)
    words = [f" w{i}" for i in range(500)]
    for i, word in enumerate(words):
        await emitter.delta("text", word)
        if i == 250:
            await emitter.emit(
                ToolStartedEvent(
                    session_id="s", run_id="r", seq=0, tool_call_id="c", tool_name="t", args={}
                )
            )
        if rng.random() < 0.05:
            await asyncio.sleep(0.03)  # let the window pass now and then
    await emitter.close()
    events = await backend.read_all("r")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    texts = [e.text for e in events if isinstance(e, TextDeltaEvent)]
    assert "".join(texts) == "".join(words)
    tool_at = next(i for i, e in enumerate(events) if isinstance(e, ToolStartedEvent))
    before = "".join(e.text for e in events[:tool_at] if isinstance(e, TextDeltaEvent))
    assert before == "".join(words[:251])
    assert emitter.parts.text == "".join(words)


async def test_deltas_within_the_window_are_merged_and_the_first_goes_at_once() -> None:
    backend = MemoryBackend()
    emitter = make(backend, window_ms=50)
    await emitter.emit(started())
    await emitter.delta("text", "a")
    assert [e.seq for e in await backend.read_all("r")] == [1, 2]  # first delta: no delay
    for piece in "bcdef":
        await emitter.delta("text", piece)
    assert len(await backend.read_all("r")) == 2  # merged, waiting for the window
    await asyncio.sleep(0.12)
    events = await backend.read_all("r")
    assert [e.text for e in events if isinstance(e, TextDeltaEvent)] == ["a", "bcdef"]


async def test_the_size_cap_flushes_early() -> None:
    backend = MemoryBackend()
    emitter = make(backend, window_ms=10_000, cap=10)
    await emitter.delta("text", "x")
    for _ in range(25):
        await emitter.delta("text", "y")
    texts = [e.text for e in await backend.read_all("r") if isinstance(e, TextDeltaEvent)]
    assert texts == ["x", "y" * 10, "y" * 10]
    await emitter.close()
    texts = [e.text for e in await backend.read_all("r") if isinstance(e, TextDeltaEvent)]
    assert "".join(texts) == "x" + "y" * 25


async def test_reasoning_and_text_stay_separate_blocks() -> None:
    backend = MemoryBackend()
    emitter = make(backend, window_ms=10_000)
    await emitter.delta("reasoning", "think ")
    await emitter.delta("reasoning", "more")
    await emitter.delta("text", "answer")
    await emitter.close()
    assert [(e.kind, getattr(e, "text", "")) for e in await backend.read_all("r")] == [
        ("reasoning.delta", "think "),
        ("reasoning.delta", "more"),
        ("text.delta", "answer"),
    ]
    assert emitter.parts.parts == [
        {"type": "reasoning", "text": "think more"},
        {"type": "text", "text": "answer"},
    ]
