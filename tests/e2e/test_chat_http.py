"""`POST /v1/chat` and `GET /v1/chat/{id}/stream` on the wire, end to end with `httpx`: headers,
framing, keep-alives, refusals before the stream, disconnects that leave the run going, resume,
duplicates and regeneration. The AI SDK's own clients are driven in `tests/conformance`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from rillet.storage.sql import SqlStore
from tests.support.server import ServerProcess, start_server, wait_for
from tests.support.wsclient import bench_text

pytestmark = pytest.mark.e2e


def body(
    text: str, chat_id: str | None = None, message_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    message = {"id": message_id or uuid.uuid4().hex, "role": "user", "parts": []}
    message["parts"] = [{"type": "text", "text": text}]
    return {
        "id": chat_id or f"chat-{uuid.uuid4().hex}",
        "messages": [message],
        "trigger": "submit-message",
        "model": "bench",
        **extra,
    }


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@asynccontextmanager
async def chat_stream(
    server: ServerProcess, key: str, payload: dict[str, Any], path: str = "/v1/chat"
) -> AsyncIterator[httpx.Response]:
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        http.stream("POST", path, json=payload, headers=auth(key)) as response,
    ):
        yield response


async def chunks_of(response: httpx.Response) -> list[Any]:
    """Every `data:` payload (JSON, or the `[DONE]` string) of a UI message stream."""
    out: list[Any] = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def text_of(chunks: list[Any]) -> str:
    return "".join(c["delta"] for c in chunks if isinstance(c, dict) and c["type"] == "text-delta")


def saved(server: ServerProcess, key: str, chat_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/v1/sessions/{chat_id}/messages", headers=auth(key))
    response.raise_for_status()
    messages: list[dict[str, Any]] = response.json()["data"]
    return messages


async def test_ui_stream_headers_framing_and_done(server: ServerProcess, alice: str) -> None:
    payload = body("words=50 rate=0")
    async with chat_stream(server, alice, payload) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
        assert response.headers["x-accel-buffering"] == "no"
        raw = (await response.aread()).decode()
    events = [block for block in raw.split("\n\n") if block]
    assert all(block.startswith("data: ") and "\n" not in block for block in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(block.removeprefix("data: ")) for block in events[:-1]]
    assert chunks[0]["type"] == "start" and chunks[-1] == {"type": "finish"}
    assert text_of(chunks) == bench_text(50)
    [user, answer] = saved(server, alice, payload["id"])
    assert answer["id"] == chunks[0]["messageId"]
    assert user["client_id"] == f"ui:{payload['id']}:{payload['messages'][0]['id']}"


async def test_data_stream_headers_and_lines(server: ServerProcess, alice: str) -> None:
    payload = body("words=20 rate=0")
    async with chat_stream(server, alice, payload, "/v1/chat?protocol=data") as response:
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.headers["x-vercel-ai-data-stream"] == "v1"
        lines = [line async for line in response.aiter_lines() if line]
    parts = [(line[0], json.loads(line[2:])) for line in lines]
    assert parts[0][0] == "f" and parts[1] == ("8", [{"chatId": payload["id"]}])
    assert "".join(value for code, value in parts if code == "0") == bench_text(20)
    assert [code for code, _ in parts[-2:]] == ["e", "d"]


async def test_refusals_before_the_stream_are_json_with_protocol_codes(
    server: ServerProcess, alice: str, bob: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        missing = await http.post("/v1/chat", json=body("hi"))
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthorized"
        wrong = await http.post("/v1/chat", json=body("hi"), headers=auth("rk_not-a-key"))
        assert wrong.status_code == 401
        invalid = await http.post("/v1/chat", json={"id": "x"}, headers=auth(alice))
        assert invalid.status_code == 400
        assert invalid.json()["error"]["code"] == "invalid_frame"
        long = await http.post("/v1/chat", json=body("x" * 9000), headers=auth(alice))
        assert (long.status_code, long.json()["error"]["code"]) == (413, "too_large")
        sdk = await http.post("/v1/chat?sdk=six", json=body("hi"), headers=auth(alice))
        assert sdk.status_code == 400
        # Bob's chat id is not Alice's to use; her resume finds nothing there.
        chat_id = f"chat-{uuid.uuid4().hex}"
        first = await http.post("/v1/chat", json=body("words=1", chat_id), headers=auth(bob))
        assert first.status_code == 200
        taken = await http.post("/v1/chat", json=body("words=1", chat_id), headers=auth(alice))
        assert (taken.status_code, taken.json()["error"]["code"]) == (404, "not_found")
        resume = await http.get(f"/v1/chat/{chat_id}/stream", headers=auth(alice))
        assert resume.status_code == 204
        no_key = await http.get(f"/v1/chat/{chat_id}/stream")
        assert no_key.status_code == 401


async def test_busy_session_refuses_a_second_message_and_a_regeneration(
    server: ServerProcess, alice: str
) -> None:
    payload = body("words=300 rate=300")
    async with chat_stream(server, alice, payload) as response:
        lines = response.aiter_lines()
        async for line in lines:
            if '"text-delta"' in line:
                break
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            second = await http.post(
                "/v1/chat", json=body("hi", payload["id"]), headers=auth(alice)
            )
            regenerate = await http.post(
                "/v1/chat",
                json={**body("", payload["id"]), "trigger": "regenerate-message"},
                headers=auth(alice),
            )
        rest = [line async for line in lines if line]
    for refused in (second, regenerate):
        assert refused.status_code == 409
        assert refused.json()["error"] == {
            "code": "busy",
            "message": "a run is already active in this session",
            "retryable": True,
        }
    assert rest[-1] == "data: [DONE]"
    assert [m["role"] for m in saved(server, alice, payload["id"])] == ["user", "assistant"]


async def test_a_disconnect_leaves_the_run_going_and_resume_replays_it_whole(
    server: ServerProcess, alice: str
) -> None:
    words = 400
    payload = body(f"words={words} rate=400")
    async with chat_stream(server, alice, payload) as response:
        async for line in response.aiter_lines():
            if '"text-delta"' in line:
                break  # leaving the block drops the connection mid-run
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as http,
        http.stream("GET", f"/v1/chat/{payload['id']}/stream", headers=auth(alice)) as resumed,
    ):
        assert resumed.status_code == 200
        assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
        chunks = await chunks_of(resumed)
    assert chunks[0]["type"] == "start" and chunks[-1] == "[DONE]"
    assert text_of(chunks) == bench_text(words)
    answer = saved(server, alice, payload["id"])[-1]
    assert (answer["status"], answer["parts"][0]["text"]) == ("complete", bench_text(words))
    async with httpx.AsyncClient(base_url=server.url) as http:
        idle = await http.get(f"/v1/chat/{payload['id']}/stream", headers=auth(alice))
    assert idle.status_code == 204


async def test_a_dropped_stream_is_not_a_cancel(server: ServerProcess, alice: str) -> None:
    payload = body("words=200 rate=400")
    async with chat_stream(server, alice, payload) as response:
        async for line in response.aiter_lines():
            if '"text-delta"' in line:
                break

    async def finished() -> bool:
        return saved(server, alice, payload["id"])[-1]["status"] != "streaming"

    await wait_for(finished, timeout=15)
    answer = saved(server, alice, payload["id"])[-1]
    assert (answer["status"], answer["parts"][0]["text"]) == ("complete", bench_text(200))


async def test_a_resent_message_joins_its_first_run(server: ServerProcess, alice: str) -> None:
    payload = body("words=100 rate=500")
    async with (
        chat_stream(server, alice, payload) as first,
        chat_stream(server, alice, payload) as again,
    ):
        a, b = await asyncio.gather(chunks_of(first), chunks_of(again))
    assert a == b
    assert text_of(a) == bench_text(100)
    assert [m["role"] for m in saved(server, alice, payload["id"])] == ["user", "assistant"]


async def test_regenerate_replaces_the_answer_and_its_model_history(
    server: ServerProcess, alice: str
) -> None:
    payload = body("words=4 rate=0")
    async with chat_stream(server, alice, payload) as response:
        first = await chunks_of(response)
    old_answer = first[0]["messageId"]
    regenerate = {**payload, "trigger": "regenerate-message", "messageId": old_answer}
    async with chat_stream(server, alice, regenerate) as response:
        second = await chunks_of(response)
    assert second[0]["messageId"] != old_answer and text_of(second) == bench_text(4)
    messages = saved(server, alice, payload["id"])
    assert [(m["role"], m["id"]) for m in messages][1:] == [("assistant", second[0]["messageId"])]
    store = SqlStore(server.env["RILLET_DATABASE_URL"])
    await store.start()
    try:
        history = await store.load_history(payload["id"])
    finally:
        await store.close()
    prompts = [
        part["content"]
        for entry in history
        for part in entry.get("parts", [])
        if part.get("part_kind") == "user-prompt"
    ]
    assert prompts == ["words=4 rate=0"]  # once: the replaced run's history is gone

    async with httpx.AsyncClient(base_url=server.url) as http:
        stale = await http.post(
            "/v1/chat", json={**regenerate, "messageId": "not-the-last"}, headers=auth(alice)
        )
        assert (stale.status_code, stale.json()["error"]["code"]) == (400, "invalid_frame")
        nothing = await http.post(
            "/v1/chat",
            json={**body("", f"chat-{uuid.uuid4().hex}"), "trigger": "regenerate-message"},
            headers=auth(alice),
        )
        assert (nothing.status_code, nothing.json()["error"]["code"]) == (404, "not_found")


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with fast keep-alives and a low message rate limit."""
    proc = start_server(
        tmp_path_factory.mktemp("tight"), keepalive_s="0.2", messages_per_minute="3"
    )
    yield proc
    proc.stop()


async def test_keep_alive_comments_and_the_rate_limit(tight_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=tight_server.url, timeout=30) as http:
        async with http.stream("POST", "/v1/chat", json=body("words=3 rate=4")) as response:
            raw = (await response.aread()).decode()
        assert ": keep-alive\n\n" in raw and raw.endswith("data: [DONE]\n\n")
        async with http.stream(
            "POST", "/v1/chat?protocol=data", json=body("words=3 rate=4")
        ) as response:
            data = (await response.aread()).decode()
        assert "\n\n" in data  # v4 skips the empty keep-alive lines
        third = await http.post("/v1/chat", json=body("words=1"))
        assert third.status_code == 200
        limited = await http.post("/v1/chat", json=body("words=1"))
        assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limited")
