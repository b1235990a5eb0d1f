"""How much CPU pydantic-ai alone spends per streamed word, without any server around it.

Streams the `bench` model's words through `Agent.run_stream_events`, the entry point Rillet's
`AgentRunner` uses, and iterates the events as Rillet does, with nothing else: no event log, no
WebSocket, no database. Next to it, the same words from the model's stream function iterated
directly, which is the floor for any consumer. The difference is pydantic-ai's own per-delta
cost, a part of what `ws_stream.py` charges to Rillet. Run it with
`uv run --frozen python benchmarks/agent_stream.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, UserPromptPart
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.models.function import AgentInfo

from rillet.chat.demo import builtin_models


async def through_agent(words: int) -> int:
    """Stream `words` words through `Agent.run_stream_events`; the number of events seen."""
    agent: Agent[None, str] = Agent(builtin_models()["bench"], instructions="bench")
    seen = 0
    async with agent.run_stream_events(f"words={words} rate=0") as events:
        async for _event in events:
            seen += 1
    return seen


async def stream_function_only(words: int) -> int:
    """Iterate the `bench` model's stream function directly; the number of chunks."""
    model = builtin_models()["bench"]
    assert model.stream_function is not None
    prompt: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart(content=f"words={words} rate=0")])
    ]
    info = AgentInfo(
        function_tools=[],
        allow_text_output=True,
        output_tools=[],
        model_settings=None,
        model_request_parameters=ModelRequestParameters(),
        instructions=None,
    )
    seen = 0
    async for _chunk in model.stream_function(prompt, info):
        seen += 1
    return seen


def cpu_us_per_word(
    run: Callable[[int], Coroutine[Any, Any, int]], words: int, repeat: int
) -> float:
    """Median over `repeat` runs of this process's CPU time per word, in microseconds."""
    samples = []
    for _ in range(repeat):
        before = time.process_time()
        asyncio.run(run(words))
        samples.append((time.process_time() - before) / words * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cpu_us_per_word(through_agent, 200, 1)  # imports and first-use caches
    floor = cpu_us_per_word(stream_function_only, args.words, args.repeat)
    agent = cpu_us_per_word(through_agent, args.words, args.repeat)
    print(f"{args.words:,} words, medians of {args.repeat}, CPU us/word:")
    print(f"  bench stream function alone     {floor:8.1f}")
    print(f"  Agent.run_stream_events         {agent:8.1f}")
    print(f"  pydantic-ai's own cost per word {agent - floor:8.1f}")


if __name__ == "__main__":
    main()
