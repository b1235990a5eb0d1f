"""The OpenAI-compatible API end to end: a real Rillet server, the official `openai` SDK.

Client-side tools are proven against a real model loop: Rillet's model provider is the fake
OpenAI upstream, scripted to call the tool the client declared, so the call comes from a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import create_key
from tests.support.fake_openai import (
    RequestRecorder,
    ScriptedResponse,
    ScriptedText,
    ScriptedToolCall,
)
from tests.support.providers import scripted_provider
from tests.support.server import ServerProcess, saved_messages, saved_text, start_server
from tests.support.wsclient import bench_text

pytestmark = pytest.mark.e2e

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PROVIDER_MODEL = "openai:fake-model"


def client_for(server: ServerProcess, key: str, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, **kwargs)


def test_models_list(server: ServerProcess, alice: str) -> None:
    with client_for(server, alice) as client:
        models = {model.id: model for model in client.models.list()}
    assert {"demo", "bench"} <= set(models)
    demo = models["demo"]
    assert (demo.object, demo.owned_by) == ("model", "rillet")
    assert demo.model_extra is not None and demo.model_extra["context_window"] == 32_768


def test_streaming_with_usage_sends_the_saved_answer(server: ServerProcess, alice: str) -> None:
    with client_for(server, alice) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="bench",
            messages=[{"role": "user", "content": "words=400 rate=0"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(raw.parse())
    assert len({chunk.id for chunk in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == bench_text(400)
    assert chunks[-2].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    session_id = raw.headers["x-rillet-session"]
    saved = saved_messages(server, alice, session_id)
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved_text(saved[1]) == text and saved[1]["status"] == "complete"


def test_the_stream_helper_accumulates_the_final_completion(
    server: ServerProcess, alice: str
) -> None:
    with (
        client_for(server, alice) as client,
        client.chat.completions.stream(
            model="bench",
            messages=[{"role": "user", "content": "words=60 rate=0"}],
            stream_options={"include_usage": True},
        ) as stream,
    ):
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "".join(deltas) == bench_text(60)
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens > 0


def test_non_streaming_runs_server_tools_on_the_server(server: ServerProcess, alice: str) -> None:
    with client_for(server, alice) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="demo", messages=[{"role": "user", "content": "What time is it?"}]
        )
        completion = raw.parse()
    [choice] = completion.choices
    assert completion.object == "chat.completion" and completion.model == "demo"
    assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    assert choice.message.content is not None and "current_time" in choice.message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    saved = saved_messages(server, alice, raw.headers["x-rillet-session"])
    assert saved_text(saved[1]) == choice.message.content
    assert [p["type"] for p in saved[1]["parts"]] == ["tool", "text"]


def test_a_session_keeps_the_history_on_the_server(server: ServerProcess, alice: str) -> None:
    with client_for(server, alice) as client:
        first = client.chat.completions.with_raw_response.create(
            model="bench", messages=[{"role": "user", "content": "words=3"}]
        )
        session_id = first.headers["x-rillet-session"]
        ways: list[dict[str, Any]] = [
            {"extra_headers": {"x-rillet-session": session_id}},
            {"metadata": {"session_id": session_id}},
            {"user": session_id},
        ]
        for words, way in enumerate(ways, start=4):
            answer = client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": f"words={words}"}], **way
            )
            assert answer.choices[0].message.content == bench_text(words)
    saved = saved_messages(server, alice, session_id)
    assert [saved_text(m) for m in saved] == [
        "words=3",
        bench_text(3),
        "words=4",
        bench_text(4),
        "words=5",
        bench_text(5),
        "words=6",
        bench_text(6),
    ]


def test_refusals_raise_the_sdks_own_errors(server: ServerProcess, alice: str) -> None:
    user: Any = [{"role": "user", "content": "hi"}]
    with client_for(server, "rk_not-a-key") as stranger:
        with pytest.raises(openai.AuthenticationError) as denied:
            stranger.chat.completions.create(model="demo", messages=user)
        with pytest.raises(openai.AuthenticationError):
            stranger.models.list()
    assert denied.value.code == "unauthorized"
    assert denied.value.response.headers["x-should-retry"] == "false"
    with client_for(server, alice, max_retries=0) as client:
        with pytest.raises(openai.NotFoundError) as unknown_model:
            client.chat.completions.create(model="no-such-model", messages=user)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="demo",
                messages=user,
                extra_headers={"x-rillet-session": "no-such-session"},
            )
        with pytest.raises(openai.BadRequestError) as invalid:
            client.chat.completions.create(
                model="demo",
                messages=[{"role": "assistant", "content": "I speak last"}],
            )
    assert unknown_model.value.code == "not_found"
    assert unknown_model.value.response.headers["x-should-retry"] == "false"
    assert invalid.value.code == "invalid_frame" and "last message" in invalid.value.message


def test_a_busy_session_is_a_conflict(server: ServerProcess, alice: str) -> None:
    with client_for(server, alice, max_retries=0) as client:
        first = client.chat.completions.with_raw_response.create(
            model="bench",
            messages=[{"role": "user", "content": "words=5000 rate=1000"}],
            stream=True,
        )
        session_id = first.headers["x-rillet-session"]
        stream = first.parse()
        next(iter(stream))
        with pytest.raises(openai.ConflictError) as busy:
            client.chat.completions.create(
                model="bench",
                messages=[{"role": "user", "content": "words=1"}],
                extra_headers={"x-rillet-session": session_id},
            )
        stream.close()
    assert busy.value.code == "busy"
    httpx.post(
        f"{server.url}/v1/sessions/{session_id}/cancel",
        headers={"authorization": f"Bearer {alice}"},
    ).raise_for_status()


@pytest.fixture
def limited_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path, auth_mode="api_key", messages_per_minute="2")
    yield proc
    proc.stop()


def test_the_rate_limit_raises_rate_limit_error(limited_server: ServerProcess) -> None:
    key = create_key(limited_server, "carol")
    user: Any = [{"role": "user", "content": "words=1"}]
    with client_for(limited_server, key, max_retries=0) as client:
        for _ in range(2):
            client.chat.completions.create(model="bench", messages=user)
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="bench", messages=user)
    assert limited.value.code == "rate_limited"


@pytest.fixture
def provider_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServerProcess, RequestRecorder]]:
    """A server whose model provider is the fake upstream, serving the script the test gives
    as the fixture's parameter."""
    script: tuple[ScriptedResponse, ...] = request.param
    with scripted_provider(script) as (base_url, recorder):
        proc = start_server(
            tmp_path,
            openai_base_url=f"{base_url}/v1",
            openai_api_key="sk-fake",
            openai_compatible_models='["fake-model"]',
        )
        try:
            yield proc, recorder
        finally:
            proc.stop()


def tool_calls_of(chunks: list[Any]) -> list[Any]:
    return [call for c in chunks for choice in c.choices for call in choice.delta.tool_calls or []]


@pytest.mark.parametrize(
    "provider_server",
    [
        (
            ScriptedToolCall("get_weather", '{"city": "Paris"}', call_id="call_paris"),
            ScriptedText("It is sunny in Paris."),
        )
    ],
    indirect=True,
)
def test_a_client_tool_call_comes_back_and_its_result_is_answered(
    provider_server: tuple[ServerProcess, RequestRecorder],
) -> None:
    server, upstream = provider_server
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    with client_for(server, "unused") as client:
        chunks = list(
            client.chat.completions.create(
                model=PROVIDER_MODEL, messages=messages, tools=[WEATHER_TOOL], stream=True
            )
        )
        calls = tool_calls_of(chunks)
        assert (calls[0].id, calls[0].type, calls[0].function.name) == (
            "call_paris",
            "function",
            "get_weather",
        )
        assert all(call.index == 0 for call in calls)
        assert all(call.id is None and call.function.name is None for call in calls[1:])
        arguments = "".join(call.function.arguments or "" for call in calls)
        assert json.loads(arguments) == {"city": "Paris"}
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        assert [tool["function"]["name"] for tool in upstream.bodies[0]["tools"]] == [
            "current_time",
            "calculator",
            "get_weather",
        ]

        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_paris",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": arguments},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": "call_paris", "content": "sunny, 24 C"})
        answer = client.chat.completions.create(
            model=PROVIDER_MODEL, messages=messages, tools=[WEATHER_TOOL]
        )
    assert answer.choices[0].message.content == "It is sunny in Paris."
    assert answer.choices[0].finish_reason == "stop"
    # Stateless: the model got the client's whole conversation, with the tool's result.
    sent = upstream.bodies[1]["messages"]
    assert {"role": "system", "content": "Be brief."} in sent
    assert {"role": "user", "content": "Weather in Paris?"} in sent
    assert any(m["role"] == "assistant" and m.get("tool_calls") for m in sent)
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_paris", "content": "sunny, 24 C"}


@pytest.mark.parametrize(
    "provider_server",
    [
        (
            ScriptedText("Hello!"),
            ScriptedToolCall("get_weather", '{"city": "Oslo"}', call_id="call_oslo"),
            ScriptedText("Rain in Oslo."),
        )
    ],
    indirect=True,
)
def test_a_client_tool_call_in_a_session(
    provider_server: tuple[ServerProcess, RequestRecorder],
) -> None:
    server, upstream = provider_server
    conversation: list[Any] = [{"role": "user", "content": "Hi"}]
    with client_for(server, "unused") as client:
        first = client.chat.completions.with_raw_response.create(
            model=PROVIDER_MODEL, messages=conversation
        )
        session = {"x-rillet-session": first.headers["x-rillet-session"]}
        conversation += [
            {"role": "assistant", "content": first.parse().choices[0].message.content},
            {"role": "user", "content": "Weather in Oslo?"},
        ]
        asked = client.chat.completions.create(
            model=PROVIDER_MODEL,
            messages=conversation,
            tools=[WEATHER_TOOL],
            extra_headers=session,
        )
        [choice] = asked.choices
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        [call] = choice.message.tool_calls or []
        assert call.id == "call_oslo" and call.type == "function"
        assert json.loads(call.function.arguments) == {"city": "Oslo"}
        conversation += [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_oslo", "content": "rain"},
        ]
        answer = client.chat.completions.create(
            model=PROVIDER_MODEL,
            messages=conversation,
            tools=[WEATHER_TOOL],
            extra_headers=session,
        )
    assert answer.choices[0].message.content == "Rain in Oslo."
    # The server's history reached the model, then the client's result.
    sent = [(m["role"], m.get("content")) for m in upstream.bodies[2]["messages"]]
    assert sent[1:] == [
        ("user", "Hi"),
        ("assistant", "Hello!"),
        ("user", "Weather in Oslo?"),
        ("assistant", None),
        ("tool", "rain"),
    ]
    saved = saved_messages(server, "unused", session["x-rillet-session"])
    assert [m["role"] for m in saved] == ["user", "assistant"] * 3
    assert saved[3]["parts"][0]["status"] == "awaiting_client"
    assert saved[4]["parts"][-1] == {
        "type": "tool-result",
        "tool_call_id": "call_oslo",
        "result": "rain",
    }
