"""AG-UI conformance: the official `@ag-ui/client` `HttpAgent.runAgent()` against a real Rillet
server. The client's own event verifier and message reducer decide what the stream means; the
tests check what they made of it against what Rillet saved. Event sequences no offline model
produces (reasoning, cancellation, errors) are fed from the encoder to the same client pipeline
by `replay.mjs`.

The client is installed with `npm ci` from `agui/package-lock.json` (pinned `@ag-ui/client`),
once per session; a client that cannot be installed or run fails the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import create_key
from tests.support.fake_openai import (
    RequestRecorder,
    ScriptedResponse,
    ScriptedText,
    ScriptedToolCall,
)
from tests.support.npm import install_pinned
from tests.support.providers import scripted_provider
from tests.support.server import ServerProcess, saved_messages, saved_text, start_server
from tests.support.wsclient import bench_text
from tests.transports import events as ev
from tests.transports.test_agui import client_tool_run, encode

pytestmark = pytest.mark.e2e

CLIENT_DIR = Path(__file__).resolve().parent / "agui"
NODE_TIMEOUT_S = 120
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="session")
def agui_client() -> Path:
    """The directory whose `node_modules` holds the pinned AG-UI client."""
    return install_pinned(CLIENT_DIR)


def run_agent(client_dir: Path, server: ServerProcess, key: str, **config: Any) -> dict[str, Any]:
    """Run `run_agent.mjs` with `config`; the JSON it printed."""
    done = subprocess.run(
        ["node", "run_agent.mjs", json.dumps(config)],
        cwd=client_dir,
        env={**os.environ, "RILLET_URL": server.url, "RILLET_KEY": key},
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"node run_agent.mjs failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def replay(client_dir: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Run `replay.mjs` over AG-UI `events`; the JSON it printed."""
    done = subprocess.run(
        ["node", "replay.mjs", json.dumps(events)],
        cwd=client_dir,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"node replay.mjs failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def user_message(text: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "role": "user", "content": text}


@pytest.fixture(scope="module")
def agui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(
        tmp_path_factory.mktemp("agui"), auth_mode="api_key", messages_per_minute="1000"
    )
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def agui_key(agui_server: ServerProcess) -> str:
    return create_key(agui_server, "agui")


def test_run_agent_returns_the_saved_answer(
    agui_client: Path, agui_server: ServerProcess, agui_key: str
) -> None:
    thread = f"thread-{uuid.uuid4().hex}"
    out = run_agent(
        agui_client,
        agui_server,
        agui_key,
        threadId=thread,
        messages=[user_message("words=300 rate=0")],
        forwardedProps={"model": "bench"},
    )
    assert "error" not in out, out.get("error")
    [run] = out["runs"]
    assert run["events"][0] == "RUN_STARTED" and run["events"][-1] == "RUN_FINISHED"
    assert run["outcome"] == "success" and run["pendingToolCallIds"] == []
    [usage] = run["usage"]
    assert usage["model"] == "bench" and usage["outputTokens"] > 0
    [answer] = run["newMessages"]
    assert answer["role"] == "assistant" and answer["content"] == bench_text(300)
    # The thread is the session: Rillet saved exactly what the client shows.
    saved = saved_messages(agui_server, agui_key, thread)
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved_text(saved[1]) == answer["content"] and saved[1]["id"] == answer["id"]


def test_server_tool_calls_and_results_show_up(
    agui_client: Path, agui_server: ServerProcess, agui_key: str
) -> None:
    thread = f"thread-{uuid.uuid4().hex}"
    out = run_agent(
        agui_client,
        agui_server,
        agui_key,
        threadId=thread,
        messages=[user_message("What time is it?")],
        forwardedProps={"model": "demo"},
    )
    assert "error" not in out, out.get("error")
    [run] = out["runs"]
    assert "TOOL_CALL_RESULT" in run["events"] and run["pendingToolCallIds"] == []
    assistant, result = run["newMessages"]
    [call] = assistant["toolCalls"]
    assert call["function"]["name"] == "current_time"
    assert json.loads(call["function"]["arguments"]) == {"timezone": "UTC"}
    assert result["role"] == "tool" and result["toolCallId"] == call["id"]
    assert result["content"] in assistant["content"]
    saved = saved_messages(agui_server, agui_key, thread)
    assert saved_text(saved[1]) == assistant["content"]


def test_a_thread_keeps_its_history_on_the_server(
    agui_client: Path, agui_server: ServerProcess, agui_key: str
) -> None:
    thread = f"thread-{uuid.uuid4().hex}"
    first = run_agent(
        agui_client,
        agui_server,
        agui_key,
        threadId=thread,
        messages=[user_message("words=2")],
        forwardedProps={"model": "bench"},
    )
    again = run_agent(
        agui_client,
        agui_server,
        agui_key,
        threadId=thread,
        messages=[*first["messages"], user_message("words=3")],
        forwardedProps={"model": "bench"},
    )
    assert again["runs"][0]["newMessages"][0]["content"] == bench_text(3)
    saved = saved_messages(agui_server, agui_key, thread)
    assert [saved_text(m) for m in saved] == ["words=2", bench_text(2), "words=3", bench_text(3)]


def test_a_refused_request_fails_the_run(agui_client: Path, agui_server: ServerProcess) -> None:
    out = run_agent(
        agui_client,
        agui_server,
        "rk_not-a-key",
        threadId=f"thread-{uuid.uuid4().hex}",
        messages=[user_message("hi")],
    )
    assert out["runs"] == [] and "401" in out["error"]


@pytest.fixture
def provider_server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServerProcess, RequestRecorder]]:
    """A server whose model provider is the fake upstream, serving the script the test gives
    as the fixture's parameter (an exhausted script fails every further request)."""
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
def test_a_client_tool_call_is_left_to_the_client_and_its_result_answered(
    agui_client: Path, provider_server: tuple[ServerProcess, RequestRecorder]
) -> None:
    server, upstream = provider_server
    out = run_agent(
        agui_client,
        server,
        "unused",
        threadId=f"thread-{uuid.uuid4().hex}",
        messages=[user_message("Weather in Paris?")],
        tools=[WEATHER_TOOL],
        forwardedProps={"model": "openai:fake-model"},
        toolResults={"get_weather": "sunny, 24 C"},
    )
    assert "error" not in out, out.get("error")
    asked, answered = out["runs"]
    assert asked["outcome"] == "success" and asked["pendingToolCallIds"] == ["call_paris"]
    [message] = asked["newMessages"]
    [call] = message["toolCalls"]
    assert (call["id"], call["function"]["name"]) == ("call_paris", "get_weather")
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert "TOOL_CALL_RESULT" not in asked["events"]
    [answer] = answered["newMessages"]
    assert answer["content"] == "It is sunny in Paris." and answered["pendingToolCallIds"] == []
    assert upstream.bodies[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_paris",
        "content": "sunny, 24 C",
    }


@pytest.mark.parametrize("provider_server", [()], indirect=True)
def test_a_provider_failure_is_a_run_error(
    agui_client: Path, provider_server: tuple[ServerProcess, RequestRecorder]
) -> None:
    server, _ = provider_server
    out = run_agent(
        agui_client,
        server,
        "unused",
        threadId=f"thread-{uuid.uuid4().hex}",
        messages=[user_message("hi")],
        forwardedProps={"model": "openai:fake-model"},
    )
    assert "error" not in out, out.get("error")
    [run] = out["runs"]
    assert run["events"] == ["RUN_STARTED", "RUN_ERROR"] and run["outcome"] is None
    assert run["error"]["code"] == "provider_error"
    assert "model provider failed" in run["error"]["message"]


def test_the_client_accepts_reasoning_and_tool_results(agui_client: Path) -> None:
    out = replay(agui_client, encode(ev.tool_run()))
    assert "error" not in out, out.get("error")
    reasoning, answer, first, second = out["newMessages"]
    assert (reasoning["role"], reasoning["content"]) == ("reasoning", "Let me look.")
    assert (answer["role"], answer["content"]) == ("assistant", "CheckingIt is 12:00.")
    assert [call["id"] for call in answer["toolCalls"]] == ["c1", "c2"]
    assert [(m["toolCallId"], m["content"]) for m in (first, second)] == [
        ("c1", "12:00"),
        ("c2", "division by zero"),
    ]
    assert out["ends"] == [{"outcome": "success", "pendingToolCallIds": []}]


def test_the_client_sees_pending_client_tool_calls(agui_client: Path) -> None:
    out = replay(agui_client, encode(client_tool_run()))
    assert "error" not in out, out.get("error")
    [message] = out["newMessages"]
    assert [call["id"] for call in message["toolCalls"]] == ["c1"]
    assert out["ends"] == [{"outcome": "success", "pendingToolCallIds": ["c1"]}]


def test_the_client_accepts_cancelled_and_failed_runs(agui_client: Path) -> None:
    cancelled = ev.numbered(ev.started(), ev.text("Hel"), ev.completed("cancelled"))
    cancelled.append(ev.finished("cancelled").with_seq(4))
    out = replay(agui_client, encode(cancelled))
    assert out["newMessages"][0]["content"] == "Hel"
    assert out["ends"] == [{"outcome": "cancelled", "pendingToolCallIds": []}]
    failed = ev.numbered(ev.started(), ev.text("Hel"), ev.error("boom"), ev.completed("error"))
    failed.append(ev.finished("failed").with_seq(5))
    out = replay(agui_client, encode(failed))
    assert out["newMessages"][0]["content"] == "Hel"
    assert out["ends"] == [{"error": "boom", "code": "provider_error"}]
