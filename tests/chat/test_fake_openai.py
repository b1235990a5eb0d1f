"""An `openai:` model from the settings against a fake server speaking the real wire format.

Proves that streaming text, a tool call whose arguments arrive in fragments, and the usage chunk
all reach pydantic-ai as they would from OpenAI, and that the reported tokens can be priced.
"""

from __future__ import annotations

import pytest
from pydantic_ai import Agent, AgentRunResultEvent
from pydantic_ai.messages import (
    FunctionToolResultEvent,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
    ToolCallPartDelta,
)

from rillet.chat.models import cost_usd, resolve_model
from rillet.chat.tools import builtin_tools
from rillet.settings import Settings
from tests.support.fake_openai import (
    ScriptedResponse,
    ScriptedText,
    ScriptedToolCall,
    fake_openai_server,
)

PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "RILLET_OPENAI_API_KEY",
    "RILLET_OPENAI_BASE_URL",
    "RILLET_DEFAULT_MODEL",
)


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RILLET_CONFIG", "/nonexistent/rillet.toml")


async def test_text_streams_in_several_deltas_with_usage() -> None:
    script = [
        ScriptedText("Hello from the fake server!", chunks=5, input_tokens=12, output_tokens=7)
    ]
    async with fake_openai_server(script) as (base_url, recorder):
        settings = Settings(openai_base_url=f"{base_url}/v1", openai_api_key="sk-fake")
        resolved = resolve_model("openai:gpt-4o", settings)
        agent = Agent(resolved.model)
        text: list[str] = []
        async with agent.run_stream_events("Say hello") as events:
            async for event in events:
                if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                    text.append(event.part.content)
                elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                    text.append(event.delta.content_delta)
                elif isinstance(event, AgentRunResultEvent):
                    assert event.result.output == "Hello from the fake server!"
            usage = events.usage

    assert (usage.input_tokens, usage.output_tokens, usage.requests) == (12, 7, 1)
    # pydantic-ai prices the run itself (with genai-prices); Rillet's own pricing agrees.
    assert usage.cost is not None
    assert float(usage.cost) == pytest.approx(cost_usd(resolved.info, 12, 7))

    assert "".join(text) == "Hello from the fake server!"
    assert len(text) == 5
    [request] = recorder.requests
    assert request.headers["authorization"] == "Bearer sk-fake"
    assert request.body["model"] == "gpt-4o"
    assert request.body["stream"] is True
    assert request.body["stream_options"]["include_usage"] is True
    assert request.body["messages"][-1] == {"role": "user", "content": "Say hello"}


async def test_tool_call_in_fragments_runs_the_calculator_and_usage_adds_up() -> None:
    script: list[ScriptedResponse] = [
        ScriptedToolCall(
            "calculator",
            '{"expression": "6 * 7"}',
            fragments=4,
            call_id="call_abc",
            input_tokens=20,
            output_tokens=8,
        ),
        ScriptedText("The answer is 42.", chunks=3, input_tokens=40, output_tokens=6),
    ]
    async with fake_openai_server(script) as (base_url, recorder):
        settings = Settings(openai_base_url=f"{base_url}/v1", openai_api_key="sk-fake")
        resolved = resolve_model("openai:gpt-4o", settings)
        agent = Agent(resolved.model, tools=[spec.tool for spec in builtin_tools()])
        args_fragments: list[str] = []
        tool_results: list[object] = []
        responses: list[ModelResponse] = []
        output = ""
        async with agent.run_stream_events("What is 6 times 7?") as events:
            async for event in events:
                if isinstance(event, PartStartEvent) and isinstance(event.part, ToolCallPart):
                    args_fragments.append(str(event.part.args or ""))
                elif isinstance(event, PartDeltaEvent) and isinstance(
                    event.delta, ToolCallPartDelta
                ):
                    args_fragments.append(str(event.delta.args_delta or ""))
                elif isinstance(event, FunctionToolResultEvent):
                    tool_results.append(event.part.content)
                elif isinstance(event, AgentRunResultEvent):
                    output = event.result.output
                    responses = [
                        message
                        for message in event.result.all_messages()
                        if isinstance(message, ModelResponse)
                    ]
            run_usage = events.usage

    assert "".join(args_fragments) == '{"expression": "6 * 7"}'
    assert len([fragment for fragment in args_fragments if fragment]) == 4
    assert tool_results == ["42"]
    assert output == "The answer is 42."
    assert [(r.usage.input_tokens, r.usage.output_tokens) for r in responses] == [(20, 8), (40, 6)]
    assert run_usage.input_tokens == 60
    assert run_usage.output_tokens == 14
    assert run_usage.requests == 2
    assert run_usage.tool_calls == 1

    # The second request carries the tool call and its result back, as OpenAI expects them.
    second = recorder.bodies[1]["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "call_abc"
    assert second[-1] == {"role": "tool", "tool_call_id": "call_abc", "content": "42"}
    assert {tool["function"]["name"] for tool in recorder.bodies[0]["tools"]} >= {
        "calculator",
        "current_time",
    }

    cost = cost_usd(resolved.info, run_usage.input_tokens, run_usage.output_tokens)
    assert cost is not None and cost > 0


async def test_non_streamed_requests_work_too() -> None:
    script = [ScriptedText("Not streamed.", input_tokens=3, output_tokens=2)]
    async with fake_openai_server(script) as (base_url, recorder):
        settings = Settings(openai_base_url=f"{base_url}/v1")
        result = await Agent(resolve_model("openai:local-model", settings).model).run("hi")
    assert result.output == "Not streamed."
    assert result.usage.input_tokens == 3 and result.usage.output_tokens == 2
    assert recorder.bodies[0].get("stream") in (None, False)
