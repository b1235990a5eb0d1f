"""The fake OpenAI upstream (`tests.support.fake_openai`) on a thread of its own, so synchronous
tests and fixtures can use it as a Rillet server's model provider."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from tests.support.fake_openai import RequestRecorder, ScriptedResponse, fake_openai_server

START_TIMEOUT_S = 15.0


@contextmanager
def scripted_provider(
    script: Sequence[ScriptedResponse],
) -> Iterator[tuple[str, RequestRecorder]]:
    """Serve `script` as `fake_openai_server` does; yields `(base_url, recorder)`, with the
    OpenAI API under `<base_url>/v1`."""
    ready = threading.Event()
    stop = threading.Event()
    found: dict[str, tuple[str, RequestRecorder]] = {}

    async def serve() -> None:
        async with fake_openai_server(script) as running:
            found["server"] = running
            ready.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="scripted-provider")
    thread.start()
    try:
        if not ready.wait(START_TIMEOUT_S):
            raise RuntimeError("the fake OpenAI provider did not start")
        yield found["server"]
    finally:
        stop.set()
        thread.join(START_TIMEOUT_S)
