"""WebSocket protocol v1 end to end: a real server process, the real `websockets` client."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import pytest
import websockets

from tests.support.server import ServerProcess, saved_messages
from tests.support.wsclient import WsClient, bench_text, text_of

pytestmark = pytest.mark.e2e


async def start_run(client: WsClient, query: str, **kwargs: object) -> tuple[str, str]:
    """Send a message; return `(session_id, run_id)` from the START status."""
    await client.message(query, **kwargs)  # type: ignore[arg-type]
    start = await client.recv_type("status")
    assert start["data"]["status"] == "START"
    return start["session_id"], start["run_id"]


async def test_bench_run_of_2000_words_arrives_whole_and_is_saved(
    server: ServerProcess, alice: str
) -> None:
    client = await WsClient.connect(server.ws_url, alice)
    await client.message("words=2000 rate=0")
    session = await client.recv_type("session")
    frames = await client.until_end()
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == list(range(1, len(seqs) + 1))
    assert text_of(frames) == bench_text(2000)
    end = frames[-1]["data"]
    assert end["reason"] == "completed" and end["isComplete"] is True
    kinds = [f["type"] for f in frames]
    assert "usage_info" in kinds and kinds[-2] == "message"
    saved = saved_messages(server, alice, session["session_id"])
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[1]["status"] == "complete"
    assert saved[1]["parts"] == [{"type": "text", "text": bench_text(2000)}]
    usage = await client.recv_type("usage_info")
    assert usage["data"]["total_cost_usd"] == 0.0
    await client.close()


async def _drop_and_resume(server: ServerProcess, key: str, rng: random.Random) -> None:
    words = 300
    client = await WsClient.connect(server.ws_url, key)
    session_id, run_id = await start_run(client, f"words={words} rate=1500")
    frames: list[dict[str, object]] = []
    for _ in range(rng.randint(0, 12)):
        frame = await client.recv()
        frames.append(frame)
        if frame["type"] == "status":
            break
    last_seq = max([1, *(f["seq"] for f in frames if isinstance(f.get("seq"), int))])
    await client.conn.close()  # drop without goodbye
    again = await WsClient.connect(server.ws_url, key)
    await again.send(
        {"type": "subscribe", "session_id": session_id, "run_id": run_id, "after": last_seq}
    )
    rest = await again.until_end(run_id)
    assert all(f["seq"] > last_seq for f in rest if "seq" in f)
    assert text_of(frames + rest, run_id) == bench_text(words)
    await again.close()


async def test_disconnect_and_resume_after_last_seq_loses_nothing_50_times(
    server: ServerProcess, alice: str
) -> None:
    rng = random.Random(20261121)
    for _ in range(5):
        await asyncio.gather(*(_drop_and_resume(server, alice, rng) for _ in range(10)))


async def test_two_connections_of_one_user_both_get_every_event(
    server: ServerProcess, alice: str
) -> None:
    first = await WsClient.connect(server.ws_url, alice)
    second = await WsClient.connect(server.ws_url, alice)
    session_id, run_id = await start_run(first, "words=400 rate=800")
    await second.send({"type": "subscribe", "session_id": session_id})
    a, b = await asyncio.gather(first.until_end(run_id), second.until_end(run_id))
    seqs_b = [f["seq"] for f in b if "seq" in f]
    assert seqs_b == list(range(1, len(seqs_b) + 1))
    assert text_of(a) == text_of(b) == bench_text(400)
    await first.close()
    await second.close()


async def test_cancel_from_a_second_connection_saves_the_partial_answer(
    server: ServerProcess, alice: str
) -> None:
    from rillet.storage.sql import SqlStore

    watcher = await WsClient.connect(server.ws_url, alice)
    canceller = await WsClient.connect(server.ws_url, alice)
    session_id, run_id = await start_run(watcher, "words=2000 rate=100")
    frames = [await watcher.recv_type("token") for _ in range(3)]
    await canceller.send({"type": "control", "action": "cancel", "session_id": session_id})
    ack = await canceller.recv_type("status")
    assert ack["data"]["status"] == "END" and ack["data"]["reason"] == "cancelled"
    frames += await watcher.until_end(run_id)
    assert frames[-1]["data"]["reason"] == "cancelled"
    partial = text_of(frames)
    assert partial and bench_text(2000).startswith(partial) and partial != bench_text(2000)
    saved = saved_messages(server, alice, session_id)[-1]
    assert saved["status"] == "cancelled"
    assert saved["parts"] == [{"type": "text", "text": partial}]
    store = SqlStore(server.env["RILLET_DATABASE_URL"])
    await store.start()
    try:
        history = json.dumps(await store.load_history(session_id))
    finally:
        await store.close()
    assert "cancelled the previous answer" in history
    run = httpx.get(
        f"{server.url}/v1/runs/{run_id}", headers={"authorization": f"Bearer {alice}"}
    ).json()
    assert run["status"] == "cancelled"
    await watcher.close()
    await canceller.close()


async def test_cancel_sent_right_after_the_message_is_honoured(
    server: ServerProcess, alice: str
) -> None:
    client = await WsClient.connect(server.ws_url, alice)
    await client.message("words=50 rate=0")
    session = await client.recv_type("session")
    await client.send({"type": "control", "action": "cancel", "session_id": session["session_id"]})
    frames = await client.until_end()
    assert frames[-1]["data"]["reason"] == "cancelled"
    assert saved_messages(server, alice, session["session_id"])[-1]["status"] == "cancelled"
    await client.close()


async def test_resent_message_id_starts_no_second_run(server: ServerProcess, alice: str) -> None:
    client = await WsClient.connect(server.ws_url, alice)
    client_id = await client.message("words=200 rate=400")
    session = await client.recv_type("session")
    first = await client.recv_type("status")
    await client.message("words=200 rate=400", client_id=client_id)
    frames = await client.until_end(first["run_id"])
    assert {f["run_id"] for f in frames if f.get("run_id")} == {first["run_id"]}
    assert text_of(client.frames) == bench_text(200)
    # A resend after the run ended also joins the first run (replayed), never a new one.
    other = await WsClient.connect(server.ws_url, alice)
    await other.message("words=200 rate=400", client_id=client_id, session_id=session["session_id"])
    replay = await other.until_end()
    assert {f["run_id"] for f in replay if f.get("run_id")} == {first["run_id"]}
    saved = saved_messages(server, alice, session["session_id"])
    assert [m["role"] for m in saved] == ["user", "assistant"]
    await client.close()
    await other.close()


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "JSON object"),
        ('{"type": "launch"}', "unknown frame type"),
        ('{"no_type": 1}', "unknown frame type"),
        ('{"type": "message"}', "query"),
        ('{"type": "message", "query": 42}', "query"),
        ('{"type": "control", "action": "explode", "session_id": "x"}', "action"),
        ('{"type": "subscribe", "session_id": "s", "after": -1}', "after"),
        ('{"type": "message", "query": "hi", "mode": "god"}', "mode"),
    ],
)
async def test_bad_frames_get_invalid_frame_and_the_connection_keeps_working(
    server: ServerProcess, alice: str, raw: str, needle: str
) -> None:
    client = await WsClient.connect(server.ws_url, alice)
    await client.conn.send(raw)
    error = await client.recv_type("error")
    assert error["data"]["code"] == "invalid_frame"
    assert needle in error["data"]["text"]
    await client.send({"type": "ping", "t": 7})
    assert (await client.recv_type("pong"))["data"] == {"t": 7}
    await client.close()


async def test_refusals_are_typed_and_the_connection_keeps_working(
    server: ServerProcess, alice: str, bob: str
) -> None:
    client = await WsClient.connect(server.ws_url, alice)
    await client.message("x" * 8001)
    assert (await client.recv_type("error"))["data"]["code"] == "too_large"
    await client.message("hello", session_id="no-such-session")
    assert (await client.recv_type("error"))["data"]["code"] == "not_found"
    await client.message("hello", model="nosuchprovider:model")
    assert (await client.recv_type("error"))["data"]["code"] == "not_found"
    await client.send({"type": "subscribe", "session_id": "nope"})
    assert (await client.recv_type("error"))["data"]["code"] == "not_found"
    # Bob's session is invisible to Alice, whatever she tries.
    bobs = await WsClient.connect(server.ws_url, bob)
    bob_session, bob_run = await start_run(bobs, "words=5 rate=0")
    await bobs.until_end(bob_run)
    for frame in (
        {"type": "message", "id": "x1", "query": "hi", "session_id": bob_session},
        {"type": "subscribe", "session_id": bob_session, "run_id": bob_run},
        {"type": "control", "action": "cancel", "session_id": bob_session},
    ):
        await client.send(frame)
        assert (await client.recv_type("error"))["data"]["code"] == "not_found"
    response = httpx.get(
        f"{server.url}/v1/sessions/{bob_session}", headers={"authorization": f"Bearer {alice}"}
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    # Still healthy: a real run works on the same connection.
    session_id, run_id = await start_run(client, "words=20 rate=0")
    assert text_of(await client.until_end(run_id)) == bench_text(20)
    await client.close()
    await bobs.close()


async def test_a_frame_over_the_size_limit_closes_with_1009(
    server: ServerProcess, alice: str
) -> None:
    client = await WsClient.connect(server.ws_url, alice)
    await client.send({"type": "message", "query": "x" * 2_000_000})
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await client.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_auth_bad_and_missing_tokens(server: ServerProcess) -> None:
    bad = await WsClient.connect(server.ws_url, init=False)
    await bad.send({"type": "init", "token": "rk_wrong"})
    error = await bad.recv_type("error")
    assert error["data"]["code"] == "unauthorized"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await bad.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    early = await WsClient.connect(server.ws_url, init=False)
    await early.message("hi")
    assert (await early.recv_type("error"))["data"]["code"] == "unauthorized"
    await early.close()
    assert httpx.get(f"{server.url}/v1/sessions").status_code == 401


async def test_token_in_the_authorization_header(server: ServerProcess, alice: str) -> None:
    client = await WsClient.connect(
        server.ws_url, init=False, additional_headers={"authorization": f"Bearer {alice}"}
    )
    session_id, run_id = await start_run(client, "words=3 rate=0")
    assert text_of(await client.until_end(run_id)) == bench_text(3)
    await client.close()


async def test_rest_sessions_and_run_events_sse(server: ServerProcess, alice: str) -> None:
    headers = {"authorization": f"Bearer {alice}"}
    client = await WsClient.connect(server.ws_url, alice)
    session_id, run_id = await start_run(client, "words=30 rate=0")
    await client.until_end(run_id)
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        listed = (await http.get("/v1/sessions")).json()["data"]
        assert session_id in [s["id"] for s in listed]
        renamed = await http.patch(f"/v1/sessions/{session_id}", json={"title": "Renamed"})
        assert renamed.json()["title"] == "Renamed"
        bad = await http.patch(f"/v1/sessions/{session_id}", json={"title": ""})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_frame"
        events = []
        async with http.stream(
            "GET", f"/v1/runs/{run_id}/events", headers={"last-event-id": "2"}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert [e["seq"] for e in events] == list(range(3, len(events) + 3))
        assert events[-1]["kind"] == "run.finished"
        full = await http.get(f"/v1/runs/{run_id}/events", params={"after": 0})
        texts = [
            json.loads(line[6:]) for line in full.text.splitlines() if line.startswith("data: ")
        ]
        assert "".join(e["text"] for e in texts if e["kind"] == "text.delta") == bench_text(30)
        assert (await http.delete(f"/v1/sessions/{session_id}")).status_code == 204
        assert (await http.get(f"/v1/sessions/{session_id}")).status_code == 404
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        models = (await http.get("/v1/models")).json()["data"]
        assert {"demo", "bench"} <= {m["id"] for m in models}
    await client.close()


async def test_local_mode_demo_model_answers_and_uses_a_tool(local_server: ServerProcess) -> None:
    client = await WsClient.connect(local_server.ws_url)
    await client.message("What time is it?", model="demo")
    frames = await client.until_end()
    tools = [f for f in frames if f["type"] == "tool_call"]
    assert [t["data"]["status"] for t in tools] == ["started", "completed"]
    assert tools[0]["data"]["tool_name"] == "current_time"
    assert tools[1]["data"]["result"] in text_of(frames)
    await client.message("Hello there", model="demo")
    answer = text_of(await client.until_end())
    assert "OPENAI_API_KEY" in answer
    await client.close()
