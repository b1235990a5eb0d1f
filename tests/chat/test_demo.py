"""Tests for the offline `demo` and `bench` models, run through a real pydantic-ai agent."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic_ai import Agent, AgentRunResultEvent
from pydantic_ai.messages import (
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
)
from pydantic_ai.models.function import FunctionModel

from rillet.chat import demo
from rillet.chat.demo import BenchRequest, builtin_models, parse_bench_request
from rillet.chat.tools import builtin_tools


@dataclass
class StreamedRun:
    """What one `run_stream_events` call produced."""

    chunks: list[str] = field(default_factory=list)
    tool_calls: list[ToolCallPart] = field(default_factory=list)
    tool_results: list[Any] = field(default_factory=list)
    output: str = ""
    responses: list[ModelResponse] = field(default_factory=list)


async def stream(model: FunctionModel, prompt: str, *, with_tools: bool = True) -> StreamedRun:
    agent = Agent(tools=[spec.tool for spec in builtin_tools()] if with_tools else [])
    run = StreamedRun()
    async with agent.run_stream_events(prompt, model=model) as events:
        async for event in events:
            if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                run.chunks.append(event.part.content)
            elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                run.chunks.append(event.delta.content_delta)
            elif isinstance(event, FunctionToolCallEvent):
                run.tool_calls.append(event.part)
            elif isinstance(event, FunctionToolResultEvent):
                run.tool_results.append(event.part.content)
            elif isinstance(event, AgentRunResultEvent):
                run.output = event.result.output
                messages = event.result.all_messages()
                run.responses = [m for m in messages if isinstance(m, ModelResponse)]
    return run


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> dict[str, FunctionModel]:
    monkeypatch.setattr(demo, "DEMO_CHUNK_DELAY_S", 0.0)
    return builtin_models()


# --- bench ------------------------------------------------------------------------------------


@pytest.mark.parametrize("words", [1, 2, 2000])
async def test_bench_streams_exactly_n_words_one_chunk_each(
    models: dict[str, FunctionModel], words: int
) -> None:
    run = await stream(models["bench"], f"words={words} rate=0")
    expected = " ".join(f"w{index}" for index in range(1, words + 1))
    assert "".join(run.chunks) == expected
    assert run.output == expected
    assert len(run.chunks) == words
    assert run.chunks[:2] == ["w1", " w2"][:words]


async def test_bench_paces_words_at_the_requested_rate(models: dict[str, FunctionModel]) -> None:
    started = time.monotonic()
    run = await stream(models["bench"], "words=20 rate=50")
    elapsed = time.monotonic() - started
    assert len(run.chunks) == 20
    # 20 words at 50/s: the last is due 19/50 = 0.38 s after the first. Only a loose lower bound,
    # as a shared machine may be slow but cannot make the model early.
    assert elapsed >= 0.3


@pytest.mark.parametrize(
    "prompt", ["hello", "words=abc rate=1", "words=0", "words=5 rate=-1", "words=5 speed=3", ""]
)
async def test_bench_explains_its_format_when_the_input_is_malformed(
    models: dict[str, FunctionModel], prompt: str
) -> None:
    run = await stream(models["bench"], prompt)
    assert "words=N rate=R" in run.output


def test_parse_bench_request() -> None:
    assert parse_bench_request("words=3 rate=2.5") == BenchRequest(words=3, rate=2.5)
    assert parse_bench_request("  rate=0   words=10 ") == BenchRequest(words=10, rate=0.0)
    assert parse_bench_request("words=7") == BenchRequest(words=7, rate=0.0)
    assert parse_bench_request("words=7 words=8") is None
    assert parse_bench_request("words=7 rate=inf") is None
    assert parse_bench_request("words=7 rate=nan") is None


async def test_bench_works_without_streaming(models: dict[str, FunctionModel]) -> None:
    result = await Agent(models["bench"]).run("words=4 rate=0")
    assert result.output == "w1 w2 w3 w4"


# --- demo -------------------------------------------------------------------------------------


async def test_demo_answers_with_setup_help_and_quotes_the_question(
    models: dict[str, FunctionModel],
) -> None:
    run = await stream(models["demo"], "How do I deploy Rillet?")
    assert len(run.chunks) > 20
    assert "How do I deploy Rillet?" in run.output
    for setting in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        assert setting in run.output
    assert "RILLET_OPENAI_BASE_URL" in run.output
    assert "RILLET_DEFAULT_MODEL" in run.output
    assert run.tool_calls == []
    assert run.responses[-1].usage.output_tokens > 0


async def test_demo_calls_current_time_then_reports_its_result(
    models: dict[str, FunctionModel],
) -> None:
    run = await stream(models["demo"], "What time is it?")
    assert [(call.tool_name, call.args_as_dict()) for call in run.tool_calls] == [
        ("current_time", {"timezone": "UTC"})
    ]
    [result] = run.tool_results
    assert result in run.output
    assert len(run.responses) == 2


async def test_demo_calculates_with_the_calculator(models: dict[str, FunctionModel]) -> None:
    run = await stream(models["demo"], "Please calculate (2 + 3) * 4?")
    assert [(call.tool_name, call.args_as_dict()) for call in run.tool_calls] == [
        ("calculator", {"expression": "(2 + 3) * 4"})
    ]
    assert run.tool_results == ["20"]
    assert "20" in run.output


async def test_demo_reports_a_refused_calculation(models: dict[str, FunctionModel]) -> None:
    run = await stream(models["demo"], "compute __import__('os')")
    assert run.tool_calls[0].tool_name == "calculator"
    assert "could not answer" in run.output


async def test_demo_answers_a_time_question_without_tools_when_none_are_offered(
    models: dict[str, FunctionModel],
) -> None:
    run = await stream(models["demo"], "What time is it?", with_tools=False)
    assert run.tool_calls == []
    assert "demo" in run.output


async def test_demo_works_without_streaming(models: dict[str, FunctionModel]) -> None:
    agent = Agent(models["demo"], tools=[spec.tool for spec in builtin_tools()])
    result = await agent.run("what time is it")
    tool_result = result.all_messages()[2].parts[0]
    assert tool_result.part_kind == "tool-return"
    assert str(tool_result.content) in result.output
    assert result.usage.requests == 2
    assert result.usage.output_tokens > 0
