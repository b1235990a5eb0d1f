"""The OpenAI-compatible provider path, end to end: Rillet streams from a local fake server that
speaks the real OpenAI streaming format, runs the tool the model asked for, and bills usage."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.fake_openai import ScriptedText, ScriptedToolCall, fake_openai_server
from tests.support.server import start_server
from tests.support.wsclient import WsClient, text_of

pytestmark = pytest.mark.e2e


async def test_openai_compatible_stream_with_a_split_tool_call_and_usage(tmp_path: Path) -> None:
    script = [
        ScriptedToolCall(
            "calculator", '{"expression": "6*7"}', fragments=4, input_tokens=100, output_tokens=20
        ),
        ScriptedText("The answer is **42**.", chunks=5, input_tokens=150, output_tokens=10),
    ]
    async with fake_openai_server(script) as (base_url, recorder):
        server = start_server(
            tmp_path,
            openai_base_url=f"{base_url}/v1",
            openai_api_key="sk-test",
            openai_compatible_models='["gpt-4o"]',
        )
        try:
            client = await WsClient.connect(server.ws_url)
            await client.message("What is 6*7?", model="openai:gpt-4o")
            frames = await client.until_end()
            await client.message(
                "And again?", model="openai:gpt-4o", session_id=frames[-1]["session_id"]
            )
            failed = await client.until_end()
            await client.close()
            run_id = frames[-1]["run_id"]
            run = httpx.get(f"{server.url}/v1/runs/{run_id}").json()
            messages = httpx.get(
                f"{server.url}/v1/sessions/{frames[-1]['session_id']}/messages"
            ).json()["data"]
        finally:
            server.stop()

    tools = [f["data"] for f in frames if f["type"] == "tool_call"]
    assert [(t["tool_name"], t["status"]) for t in tools] == [
        ("calculator", "started"),
        ("calculator", "completed"),
    ]
    assert tools[0]["args"] == {"expression": "6*7"} and tools[1]["result"] == "42"
    assert text_of(frames) == "The answer is **42**."
    usage = [f["data"] for f in frames if f["type"] == "usage_info"]
    assert [(u["input_tokens"], u["output_tokens"]) for u in usage] == [(100, 20), (150, 10)]
    assert all(u["cost_usd"] > 0 for u in usage)
    assert run["status"] == "completed"
    assert (run["input_tokens"], run["output_tokens"]) == (250, 30)
    assert run["cost_usd"] == pytest.approx(sum(u["cost_usd"] for u in usage))
    # The model got the tool's result back in the second request, and asked for usage.
    second = recorder.bodies[1]
    assert any(m.get("role") == "tool" and m.get("content") == "42" for m in second["messages"])
    assert recorder.bodies[0]["stream"] is True
    assert recorder.bodies[0].get("stream_options", {}).get("include_usage") is True
    # A provider failure ends the run with a typed error, and the turn is still saved.
    assert [f["data"]["code"] for f in failed if f["type"] == "error"] == ["provider_error"]
    assert failed[-1]["data"]["run_status"] == "failed"
    assert [m["status"] for m in messages] == ["complete", "complete", "complete", "error"]
    assert messages[1]["parts"][0]["type"] == "tool"
