"""One suite for every `StreamBackend`: the in-memory one and Redis (the shared local server, a
unique key prefix per test). `nodes` gives two backends that share state, as two Rillet processes
would: on Redis two clients of one prefix, in memory the same object twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from rillet.errors import LeaseLostError, ResumeExpiredError, StreamError
from rillet.events import RunEvent, RunFinishedEvent, RunStartedEvent, TextDeltaEvent
from rillet.streams.base import Command, StreamBackend
from rillet.streams.memory import MemoryBackend
from rillet.streams.redis import RedisBackend
from tests.support.redis import REDIS_URL, drop_prefix, unique_prefix

Nodes = tuple[StreamBackend, StreamBackend]


@pytest.fixture(params=["memory", "redis"])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[Nodes]:
    if request.param == "memory":
        memory = MemoryBackend()
        await memory.start()
        yield memory, memory
        await memory.close()
        return
    prefix = unique_prefix()
    first, second = RedisBackend(REDIS_URL, prefix), RedisBackend(REDIS_URL, prefix)
    await first.start()
    await second.start()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()
        await drop_prefix(REDIS_URL, prefix)


@pytest.fixture
def backend(nodes: Nodes) -> StreamBackend:
    return nodes[0]


def new_id() -> str:
    return uuid.uuid4().hex


def started(run_id: str, seq: int = 1) -> RunEvent:
    return RunStartedEvent(
        session_id="s", run_id=run_id, seq=seq, message_id="m", model="bench", mode="agent"
    )


def text(run_id: str, seq: int, value: str) -> RunEvent:
    return TextDeltaEvent(session_id="s", run_id=run_id, seq=seq, text=value)


def finished(run_id: str, seq: int, status: str = "completed") -> RunEvent:
    return RunFinishedEvent(
        session_id="s",
        run_id=run_id,
        seq=seq,
        status=status,  # type: ignore[arg-type]
        reason=status,
        input_tokens=1,
        output_tokens=2,
        cost_usd=None,
    )


async def collect(stream: AsyncIterator[RunEvent]) -> list[RunEvent]:
    return [event async for event in stream]


async def refused(backend: StreamBackend, error: type[Exception], *events: RunEvent) -> None:
    """The first of `events` is refused with `error`: at once, or (a backend that does not wait
    for its store) by the run's next append at the latest, `run.finished` being the last."""
    with pytest.raises(error):
        for event in events:
            await backend.append(event)


async def test_replay_then_live_across_nodes(nodes: Nodes) -> None:
    producer, watcher = nodes
    run_id = new_id()
    await producer.open_log(run_id)
    assert await watcher.has_log(run_id) and await watcher.last_seq(run_id) == 0
    await producer.append(started(run_id))
    await producer.append(text(run_id, 2, "a"))
    from_start = asyncio.create_task(collect(watcher.subscribe(run_id)))
    after_two = asyncio.create_task(collect(watcher.subscribe(run_id, after=2)))
    local = asyncio.create_task(collect(producer.subscribe(run_id, after=1)))
    await asyncio.sleep(0.05)
    for seq in range(3, 8):
        await producer.append(text(run_id, seq, f"w{seq}"))
    await producer.append(finished(run_id, 8))
    events = await asyncio.wait_for(from_start, 10)
    assert [e.seq for e in events] == list(range(1, 9))
    assert events[-1] == finished(run_id, 8) and events[1] == text(run_id, 2, "a")
    assert [e.seq for e in await asyncio.wait_for(after_two, 10)] == list(range(3, 9))
    assert [e.seq for e in await asyncio.wait_for(local, 10)] == list(range(2, 9))
    assert await watcher.last_seq(run_id) == 8
    assert [e.seq for e in await watcher.read_all(run_id)] == list(range(1, 9))
    # A finished log replays whole, and subscribing past its end just ends.
    assert len(await collect(watcher.subscribe(run_id))) == 8
    assert await collect(watcher.subscribe(run_id, after=8)) == []


async def test_unknown_and_expired_logs(backend: StreamBackend) -> None:
    with pytest.raises(ResumeExpiredError):
        await collect(backend.subscribe(new_id()))
    assert await backend.last_seq(new_id()) == 0 and await backend.read_all(new_id()) == []
    run_id = new_id()
    await backend.open_log(run_id)
    await backend.append(started(run_id))
    await backend.append(finished(run_id, 2))
    await backend.expire(run_id, 0.2)
    assert await backend.has_log(run_id)
    await asyncio.sleep(0.5)
    assert not await backend.has_log(run_id)
    with pytest.raises(ResumeExpiredError):
        await collect(backend.subscribe(run_id))


async def test_appends_out_of_order_or_after_the_end_are_refused(backend: StreamBackend) -> None:
    gap, late = new_id(), new_id()
    await backend.open_log(gap)
    await refused(backend, StreamError, text(gap, 2, "gap"), finished(gap, 3))
    assert await backend.last_seq(gap) == 0
    await backend.open_log(late)
    await backend.append(started(late))
    await backend.append(finished(late, 2))
    await refused(backend, StreamError, text(late, 3, "late"), finished(late, 4))
    assert await backend.last_seq(late) == 2


async def test_commands_sent_before_and_after_listening_reach_the_run(nodes: Nodes) -> None:
    runner, sender = nodes
    run_id = new_id()
    await sender.send_command(run_id, Command("cancel"))
    received: list[Command] = []

    async def listen() -> None:
        async for command in runner.commands(run_id):
            received.append(command)
            if len(received) == 2:
                return

    task = asyncio.create_task(listen())
    await asyncio.sleep(0.05)
    await sender.send_command(run_id, Command("decision", {"approve": True}))
    await asyncio.wait_for(task, 5)
    assert received == [Command("cancel"), Command("decision", {"approve": True})]


async def test_claim_release_and_the_queue(nodes: Nodes) -> None:
    first, second = nodes
    session = new_id()
    assert await first.claim_session(session, "r1") is None
    assert await first.claim_session(session, "r1") is None  # the same run again is fine
    assert await second.claim_session(session, "r2") == "r1"
    assert await second.active_run(session) == "r1"
    assert await second.claim_or_enqueue(session, {"run_id": "r2", "n": 2}) is False
    assert await first.claim_or_enqueue(session, {"run_id": "r3", "n": 3}) is False
    assert await second.release_session(session, "r2") is None  # not the active run
    assert await second.release_session(session, "r1") == {"run_id": "r2", "n": 2}
    assert await first.active_run(session) == "r2"
    assert await first.release_session(session, "r2") == {"run_id": "r3", "n": 3}
    assert await first.release_session(session, "r3") is None
    assert await second.active_run(session) is None
    assert await second.claim_or_enqueue(session, {"run_id": "r4"}) is True


async def test_concurrent_claims_have_one_winner(nodes: Nodes) -> None:
    session = new_id()
    results = await asyncio.gather(
        *(nodes[i % 2].claim_session(session, f"r{i}") for i in range(20))
    )
    winners = [i for i, active in enumerate(results) if active is None]
    assert len(winners) == 1
    assert {active for active in results if active is not None} == {f"r{winners[0]}"}


async def test_session_runs_yields_the_active_run_then_announced_ones(nodes: Nodes) -> None:
    runner, watcher = nodes
    session = new_id()
    await runner.claim_session(session, "r1")
    seen: list[str] = []

    async def watch() -> None:
        async for run_id in watcher.session_runs(session):
            if run_id not in seen:
                seen.append(run_id)
            if len(seen) == 3:
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.1)
    await runner.announce_run(session, "r2")
    await runner.announce_run(new_id(), "elsewhere")
    await runner.announce_run(session, "r3")
    await asyncio.wait_for(task, 5)
    assert seen == ["r1", "r2", "r3"]


async def test_a_fence_keeps_a_stale_owner_out(nodes: Nodes) -> None:
    owner, other = nodes
    run_id = new_id()
    await owner.open_log(run_id)
    fence = await owner.acquire_lease(run_id, ttl_s=0.3)
    await owner.append(started(run_id), fence)
    await refused(owner, LeaseLostError, text(run_id, 2, "no fence"), finished(run_id, 3))
    assert await other.take_expired_leases(ttl_s=5) == []  # not expired yet
    await asyncio.sleep(0.5)
    taken = await asyncio.gather(*(node.take_expired_leases(ttl_s=5) for node in (*nodes, *nodes)))
    winners = [pairs for pairs in taken if pairs]
    assert len(winners) == 1 and winners[0][0][0] == run_id
    new_fence = winners[0][0][1]
    assert new_fence > fence
    with pytest.raises(LeaseLostError):
        await owner.append(finished(run_id, 2), fence)
    assert await owner.renew_leases({run_id: fence}, ttl_s=5) == [run_id]
    await other.append(text(run_id, 2, "recovered"), new_fence)
    await other.append(finished(run_id, 3, "interrupted"), new_fence)
    await other.release_lease(run_id, new_fence)
    await asyncio.sleep(0.1)
    assert await other.take_expired_leases(ttl_s=5) == []
    assert [e.seq for e in await owner.read_all(run_id)] == [1, 2, 3]


async def test_renewed_leases_do_not_expire(nodes: Nodes) -> None:
    owner, other = nodes
    run_id = new_id()
    fence = await owner.acquire_lease(run_id, ttl_s=0.3)
    for _ in range(4):
        await asyncio.sleep(0.15)
        assert await owner.renew_leases({run_id: fence}, ttl_s=0.3) == []
        assert await other.take_expired_leases(ttl_s=5) == []
    await owner.release_lease(run_id, fence)
    await asyncio.sleep(0.4)
    assert await other.take_expired_leases(ttl_s=5) == []
    assert await owner.renew_leases({}, ttl_s=1) == []


async def test_ping_and_shared(backend: StreamBackend) -> None:
    assert await backend.ping() is True
    assert backend.shared is isinstance(backend, RedisBackend)
