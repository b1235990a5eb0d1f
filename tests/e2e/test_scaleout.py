"""Scale-out end to end (issue 4): Rillet processes sharing one PostgreSQL database and one Redis.

Every node is a real `rillet serve` on an ephemeral port; the nodes of this module share a fresh
PostgreSQL database and a Redis key prefix of their own, and use a 3 s run lease so a dead node
is noticed quickly. Clients are the real `websockets` client; no connection is sticky.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.conftest import create_key
from tests.e2e.test_websocket import start_run
from tests.support.databases import drop_postgres, fresh_postgres_url
from tests.support.redis import REDIS_URL, PrivateRedis, drop_prefix_sync, unique_prefix
from tests.support.server import ServerProcess, saved_messages, start_server
from tests.support.wsclient import WsClient, bench_text, text_of

pytestmark = pytest.mark.e2e

LEASE_TTL_S = "3"


@dataclass
class Cluster:
    """What the nodes of one deployment share, and how to start one more node."""

    tmp: Path
    env: dict[str, str]
    nodes: list[ServerProcess]

    def start_node(self, **extra: str) -> ServerProcess:
        node = start_server(self.tmp, **{**self.env, **extra})
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop(signal.SIGKILL)


def open_cluster(tmp: Path, redis_url: str, count: int) -> Cluster:
    """A fresh database, a fresh key prefix, and `count` nodes started side by side."""
    env = {
        "database_url": asyncio.run(fresh_postgres_url()),
        "redis_url": redis_url,
        "redis_prefix": unique_prefix(),
        "auth_mode": "api_key",
        "lease_ttl_s": LEASE_TTL_S,
        "messages_per_minute": "10000",
        "max_connections_per_user": "1000",
        "max_connections_per_ip": "1000",
    }
    cluster = Cluster(tmp=tmp, env=env, nodes=[])
    with ThreadPoolExecutor(count) as pool:
        cluster.nodes = list(pool.map(lambda _: start_server(tmp, **env), range(count)))
    return cluster


def close_cluster(cluster: Cluster) -> None:
    cluster.stop()
    drop_prefix_sync(cluster.env["redis_url"], cluster.env["redis_prefix"])
    asyncio.run(drop_postgres(cluster.env["database_url"]))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = open_cluster(tmp_path_factory.mktemp("scaleout"), REDIS_URL, 2)
    yield cluster
    close_cluster(cluster)


@pytest.fixture(scope="module")
def key(cluster: Cluster) -> str:
    return create_key(cluster.nodes[0], "alice")


def seqs(frames: list[dict[str, Any]]) -> list[int]:
    return [f["seq"] for f in frames if isinstance(f.get("seq"), int)]


async def run_of(node: ServerProcess, key: str, run_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=node.url) as http:
        response = await http.get(f"/v1/runs/{run_id}", headers={"authorization": f"Bearer {key}"})
    response.raise_for_status()
    run: dict[str, Any] = response.json()
    return run


async def test_a_run_started_on_one_node_resumes_on_another(cluster: Cluster, key: str) -> None:
    a, b = cluster.nodes[:2]

    async def one(words: int, keep: int) -> None:
        client = await WsClient.connect(a.ws_url, key)
        session_id, run_id = await start_run(client, f"words={words} rate=800")
        frames = [await client.recv() for _ in range(keep)]
        last = max([1, *seqs(frames)])
        await client.conn.close()
        again = await WsClient.connect(b.ws_url, key)
        await again.send(
            {"type": "subscribe", "session_id": session_id, "run_id": run_id, "after": last}
        )
        rest = await again.until_end(run_id)
        assert seqs(rest)[0] == last + 1 and seqs(rest) == list(
            range(last + 1, last + 1 + len(seqs(rest)))
        )
        assert text_of(frames + rest, run_id) == bench_text(words)
        assert rest[-1]["data"]["reason"] == "completed"
        await again.close()

    await asyncio.gather(*(one(200 + 20 * i, i % 6) for i in range(10)))


async def test_a_message_resent_to_another_node_starts_no_second_run(
    cluster: Cluster, key: str
) -> None:
    a, b = cluster.nodes[:2]
    first = await WsClient.connect(a.ws_url, key)
    client_id = await first.message("words=100 rate=400")
    session_id = (await first.recv_type("session"))["session_id"]
    run_id = (await first.recv_type("status"))["run_id"]
    again = await WsClient.connect(b.ws_url, key)
    await again.message("words=100 rate=400", client_id=client_id, session_id=session_id)
    frames = await again.until_end()
    assert {f["run_id"] for f in frames if f.get("run_id")} == {run_id}
    assert text_of(frames) == bench_text(100)
    await first.until_end(run_id)
    assert [m["role"] for m in saved_messages(b, key, session_id)] == ["user", "assistant"]
    await first.close()
    await again.close()


async def test_a_cancel_sent_to_one_node_stops_the_run_on_another(
    cluster: Cluster, key: str
) -> None:
    a, b = cluster.nodes[:2]
    watcher = await WsClient.connect(a.ws_url, key)
    canceller = await WsClient.connect(b.ws_url, key)
    session_id, run_id = await start_run(watcher, "words=2000 rate=100")
    frames = [await watcher.recv_type("token") for _ in range(3)]
    await canceller.send({"type": "control", "action": "cancel", "session_id": session_id})
    ack = await canceller.recv_type("status", timeout=10)
    assert ack["run_id"] == run_id
    assert ack["data"]["status"] == "END" and ack["data"]["reason"] == "cancelled"
    frames += await watcher.until_end(run_id)
    assert frames[-1]["data"]["reason"] == "cancelled"
    partial = text_of(frames)
    assert partial and bench_text(2000).startswith(partial) and partial != bench_text(2000)
    saved = saved_messages(b, key, session_id)[-1]
    assert saved["status"] == "cancelled" and saved["parts"] == [{"type": "text", "text": partial}]
    assert (await run_of(b, key, run_id))["status"] == "cancelled"
    await watcher.close()
    await canceller.close()


async def test_a_second_tab_on_another_node_watches_live(cluster: Cluster, key: str) -> None:
    a, b = cluster.nodes[:2]
    first = await WsClient.connect(a.ws_url, key)
    second = await WsClient.connect(b.ws_url, key)
    session_id, run_id = await start_run(first, "words=400 rate=400")
    await second.send({"type": "subscribe", "session_id": session_id})

    async def first_token_at(client: WsClient) -> float:
        await client.recv_type("token")
        return time.monotonic()

    second_token = await first_token_at(second)
    got_a, got_b = await asyncio.gather(first.until_end(run_id), second.until_end(run_id))
    first_end = time.monotonic()
    assert second_token < first_end - 0.3, "the second tab only saw the run once it was over"
    assert text_of(first.frames) == text_of(second.frames) == bench_text(400)
    assert seqs(second.frames) == list(range(1, len(seqs(second.frames)) + 1))
    assert got_a[-1]["data"]["reason"] == got_b[-1]["data"]["reason"] == "completed"
    await first.close()
    await second.close()


async def test_kill_9_of_the_running_node_ends_its_runs_interrupted_elsewhere(
    cluster: Cluster, key: str
) -> None:
    b = cluster.nodes[1]
    doomed = await asyncio.to_thread(cluster.start_node)
    client = await WsClient.connect(doomed.ws_url, key)
    session_id, run_id = await start_run(client, "words=3000 rate=60")
    watcher = await WsClient.connect(b.ws_url, key)
    await watcher.send({"type": "subscribe", "session_id": session_id, "run_id": run_id})
    for _ in range(3):
        await watcher.recv_type("token")
    doomed.proc.kill()
    killed_at = time.monotonic()
    frames = await watcher.until_end(run_id, timeout=15)
    assert time.monotonic() - killed_at < 10
    end = frames[-1]["data"]
    assert end["status"] == "END" and end["reason"] == "interrupted"
    assert [f["data"]["code"] for f in frames if f["type"] == "error"] == ["internal"]
    assert seqs(watcher.frames) == list(range(1, len(seqs(watcher.frames)) + 1))
    partial = text_of(watcher.frames)
    assert partial and bench_text(3000).startswith(partial) and partial != bench_text(3000)
    saved = saved_messages(b, key, session_id)
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert saved[1]["status"] == "interrupted"
    assert saved[1]["parts"] == [{"type": "text", "text": partial}]
    assert (await run_of(b, key, run_id))["status"] == "interrupted"
    # The session is free again: a new message in it runs (on a live node).
    _, next_run = await start_run(watcher, "words=5 rate=0", session_id=session_id)
    assert text_of(await watcher.until_end(next_run), next_run) == bench_text(5)
    await watcher.close()
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await client.recv(timeout=5)


async def test_sigterm_drains_short_runs_complete_long_runs_end_interrupted(
    cluster: Cluster, key: str
) -> None:
    b = cluster.nodes[1]
    draining = await asyncio.to_thread(cluster.start_node, drain_timeout_s="4")
    client = await WsClient.connect(draining.ws_url, key)
    short_session, short_run = await start_run(client, "words=20 rate=40")
    long_session, long_run = await start_run(client, "words=3000 rate=60")
    await client.recv_type("token")
    draining.proc.send_signal(signal.SIGTERM)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await client.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    # The client reconnects to another node and picks both runs up where it was.
    again = await WsClient.connect(b.ws_url, key)
    for session_id, run_id in ((short_session, short_run), (long_session, long_run)):
        after = max([0, *seqs([f for f in client.frames if f.get("run_id") == run_id])])
        await again.send(
            {"type": "subscribe", "session_id": session_id, "run_id": run_id, "after": after}
        )
    ends: dict[str, str] = {}
    while len(ends) < 2:
        frame = await again.recv(timeout=15)
        if frame["type"] == "status" and frame["data"]["status"] == "END":
            ends[frame["run_id"]] = frame["data"]["reason"]
    assert ends == {short_run: "completed", long_run: "interrupted"}
    frames = client.frames + again.frames
    assert text_of(frames, short_run) == bench_text(20)
    partial = text_of(frames, long_run)
    assert partial and bench_text(3000).startswith(partial) and partial != bench_text(3000)
    assert saved_messages(b, key, short_session)[-1]["status"] == "complete"
    saved = saved_messages(b, key, long_session)[-1]
    assert saved["status"] == "interrupted" and saved["parts"] == [
        {"type": "text", "text": partial}
    ]
    assert await asyncio.to_thread(draining.proc.wait, 20) is not None
    await again.close()


async def test_200_concurrent_streams_over_two_nodes_arrive_exactly(
    cluster: Cluster, key: str
) -> None:
    nodes = cluster.nodes[:2]
    clients = await asyncio.gather(
        *(WsClient.connect(nodes[i % 2].ws_url, key) for i in range(200))
    )

    async def stream(index: int, client: WsClient) -> None:
        words = 30 + index % 20
        await client.message(f"words={words} rate=100")
        frames = await client.until_end(timeout=60)
        assert frames[-1]["data"]["reason"] == "completed"
        assert text_of(frames) == bench_text(words)

    await asyncio.gather(*(stream(i, c) for i, c in enumerate(clients)))
    await asyncio.gather(*(c.close() for c in clients))


async def test_redis_restarted_mid_run_loses_nothing_saved_and_hangs_no_client(
    tmp_path: Path,
) -> None:
    redis = PrivateRedis(tmp_path)
    redis.start()
    cluster: Cluster | None = None
    try:
        cluster = await asyncio.to_thread(open_cluster, tmp_path, redis.url, 1)
        node = cluster.nodes[0]
        key = await asyncio.to_thread(create_key, node, "carol")
        client = await WsClient.connect(node.ws_url, key)
        done_session, done_run = await start_run(client, "words=20 rate=0")
        await client.until_end(done_run)
        session_id, run_id = await start_run(client, "words=3000 rate=100")
        await client.recv_type("token")
        redis.stop()
        redis.start()
        # The run ends (failed) or goes on; either way the client hears about it in time.
        while True:
            frame = await client.recv(timeout=15)
            if frame["type"] == "error" or (
                frame["type"] == "status" and frame["data"]["status"] == "END"
            ):
                break
        saved = saved_messages(node, key, done_session)
        assert [m["status"] for m in saved] == ["complete", "complete"]
        assert saved[1]["parts"] == [{"type": "text", "text": bench_text(20)}]
        mid = saved_messages(node, key, session_id)
        assert mid[0]["role"] == "user" and mid[0]["parts"][0]["text"] == "words=3000 rate=100"

        async def settled() -> bool:
            return (await run_of(node, key, run_id))["status"] != "running"

        deadline = time.monotonic() + 15
        while not await settled():
            assert time.monotonic() < deadline, "the run never ended"
            await asyncio.sleep(0.2)
        run = await run_of(node, key, run_id)
        assert run["status"] in ("failed", "completed")
        answer = saved_messages(node, key, session_id)[-1]
        assert answer["role"] == "assistant" and answer["status"] in ("error", "complete")
        saved_text = "".join(p["text"] for p in answer["parts"] if p["type"] == "text")
        assert bench_text(3000).startswith(saved_text)
        # Redis is back: new runs work, on a new connection and on the old one if it is open.
        fresh = await WsClient.connect(node.ws_url, key)
        _, new_run = await start_run(fresh, "words=50 rate=0")
        assert text_of(await fresh.until_end(new_run)) == bench_text(50)
        await fresh.close()
        await client.close()
    finally:
        if cluster is not None:
            await asyncio.to_thread(close_cluster, cluster)
        redis.stop()


async def test_workers_serve_one_port_and_need_redis(tmp_path: Path) -> None:
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "rillet", "serve", "--port", "0", "--workers", "2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("RILLET_")},
        timeout=60,
    )
    assert refused.returncode == 2 and "RILLET_REDIS_URL" in refused.stdout
    prefix = unique_prefix()
    node = await asyncio.to_thread(
        start_server, tmp_path, "--workers", "2", redis_url=REDIS_URL, redis_prefix=prefix
    )
    try:
        clients = await asyncio.gather(*(WsClient.connect(node.ws_url) for _ in range(6)))
        for index, client in enumerate(clients):
            await client.message(f"words={20 + index} rate=200")
        ends = await asyncio.gather(*(client.until_end() for client in clients))
        for index, frames in enumerate(ends):
            assert text_of(frames) == bench_text(20 + index)
        await asyncio.gather(*(client.close() for client in clients))
        assert await asyncio.to_thread(node.stop, signal.SIGTERM, 30) is not None
    finally:
        node.stop(signal.SIGKILL)
        drop_prefix_sync(REDIS_URL, prefix)


async def start_of_another(client: WsClient, run_id: str) -> dict[str, Any]:
    """The next `status` START of a run other than `run_id` (a session watch may show it too)."""
    while True:
        frame = await client.recv_type("status", timeout=15)
        if frame["run_id"] != run_id and frame["data"]["status"] == "START":
            return frame


async def test_a_message_to_a_busy_session_on_another_node_queues_or_interrupts(
    cluster: Cluster, key: str
) -> None:
    a = cluster.nodes[0]
    with ThreadPoolExecutor(2) as pool:
        enqueuing, interrupting = pool.map(
            lambda policy: cluster.start_node(busy_policy=policy), ["enqueue", "interrupt"]
        )
    owner = await WsClient.connect(a.ws_url, key)
    session_id, first = await start_run(owner, "words=300 rate=150")
    # enqueue: the message waits behind the run on node A, then runs once it ends.
    queued = await WsClient.connect(enqueuing.ws_url, key)
    await queued.message("words=7 rate=0", session_id=session_id)
    second = await start_of_another(queued, first)
    assert text_of(await queued.until_end(second["run_id"])) == bench_text(7)
    assert (await owner.until_end(first))[-1]["data"]["reason"] == "completed"
    await owner.until_end(second["run_id"])  # the owner watches the session: it sees it too
    # interrupt: the message cancels the run on node A, then runs.
    _, third = await start_run(owner, "words=3000 rate=100", session_id=session_id)
    await owner.recv_type("token")
    breaker = await WsClient.connect(interrupting.ws_url, key)
    await breaker.message("words=9 rate=0", session_id=session_id)
    fourth = await start_of_another(breaker, third)
    assert text_of(await breaker.until_end(fourth["run_id"])) == bench_text(9)
    assert (await owner.until_end(third))[-1]["data"]["reason"] == "cancelled"
    statuses = [m["status"] for m in saved_messages(a, key, session_id) if m["role"] == "assistant"]
    assert statuses == ["complete", "complete", "cancelled", "complete"]
    for client in (owner, queued, breaker):
        await client.close()
