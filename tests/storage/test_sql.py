"""`SqlStore` against real SQLite and PostgreSQL databases (the `store` fixture runs each test on
both): users and keys, scoping by user, turns and their idempotency, finishing runs, usage,
message pages, model history and deleting sessions."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from rillet.errors import NotFoundError, StorageError
from rillet.events import FinalRunStatus
from rillet.storage.base import TurnStart, UsageRecord, UserRecord
from rillet.storage.engine import make_engine
from rillet.storage.sql import SqlStore
from rillet.storage.tables import History, Message, Run, Session, Usage


async def turn(
    store: SqlStore,
    user: UserRecord,
    text: str = "hello",
    *,
    session_id: str | None = None,
    client_id: str | None = None,
) -> TurnStart:
    return await store.begin_turn(
        user_id=user.id,
        session_id=session_id,
        client_id=client_id,
        text=text,
        attachments=None,
        model="demo",
        mode="agent",
    )


def usage(run_id: str, user: UserRecord, tokens: int, cost: float | None) -> UsageRecord:
    return UsageRecord(
        run_id=run_id,
        user_id=user.id,
        model="demo",
        input_tokens=tokens,
        output_tokens=2 * tokens,
        cost_usd=cost,
        latency_ms=12.5,
        created_at=datetime.now(UTC),
    )


async def count(url: str, table: Any, **where: str) -> int:
    """Rows of `table` matching `where`, read with an engine of its own."""
    engine = make_engine(url)
    try:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(getattr(table, column) == value)
        async with engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def test_users_and_api_keys(store: SqlStore, alice: UserRecord, bob: UserRecord) -> None:
    assert (await store.ensure_user("alice")).id == alice.id
    assert alice.created_at.tzinfo is not None
    racing = await asyncio.gather(*(store.ensure_user("carol") for _ in range(5)))
    assert len({user.id for user in racing}) == 1

    key = await store.create_api_key(alice.id, "hash-1", "rk_abc")
    await store.create_api_key(alice.id, "hash-2", "rk_def")
    assert (await store.user_for_key("hash-1")) == alice
    assert await store.user_for_key("unknown") is None
    with pytest.raises(StorageError):
        await store.create_api_key(bob.id, "hash-1", "rk_xyz")  # hashes are unique

    with pytest.raises(NotFoundError):
        await store.revoke_api_key(bob.id, key.id)
    assert await store.user_for_key("hash-1") == alice
    await store.revoke_api_key(alice.id, key.id)
    assert await store.user_for_key("hash-1") is None
    assert (await store.user_for_key("hash-2")) == alice

    keys = await store.list_api_keys(alice.id)
    assert [k.prefix for k in keys] == ["rk_abc", "rk_def"]
    revoked_at = keys[0].revoked_at
    assert revoked_at is not None and revoked_at.tzinfo is not None
    assert keys[1].revoked_at is None
    await store.revoke_api_key(alice.id, key.id)
    assert (await store.list_api_keys(alice.id))[0].revoked_at == revoked_at
    assert await store.list_api_keys(bob.id) == []


async def test_sessions_are_scoped_by_user(
    store: SqlStore, alice: UserRecord, bob: UserRecord
) -> None:
    started = await turn(store, alice)
    session_id, run_id = started.session.id, started.run.id
    assert (await store.get_session(alice.id, session_id)) == started.session

    with pytest.raises(NotFoundError):
        await store.get_session(bob.id, session_id)
    with pytest.raises(NotFoundError):
        await store.rename_session(bob.id, session_id, "mine now")
    with pytest.raises(NotFoundError):
        await store.delete_session(bob.id, session_id)
    with pytest.raises(NotFoundError):
        await store.list_messages(bob.id, session_id)
    with pytest.raises(NotFoundError):
        await store.get_run(bob.id, run_id)
    with pytest.raises(NotFoundError):
        await store.latest_run(bob.id, session_id)
    with pytest.raises(NotFoundError):
        await turn(store, bob, session_id=session_id)
    with pytest.raises(NotFoundError):
        await store.start_continuation(
            user_id=bob.id,
            session_id=session_id,
            message_id=started.run.message_id,
            model="demo",
            mode="ask",
        )
    with pytest.raises(NotFoundError):
        await store.get_session(alice.id, "no-such-session")
    assert await store.list_sessions(bob.id) == []
    assert (await store.get_session(alice.id, session_id)).title == "hello"
    assert len((await store.list_messages(alice.id, session_id)).items) == 2


async def test_list_create_and_rename_sessions(store: SqlStore, alice: UserRecord) -> None:
    first = await store.create_session(alice.id, "first")
    second = await store.create_session(alice.id)
    assert second.title == ""
    assert [s.id for s in await store.list_sessions(alice.id)] == [second.id, first.id]

    renamed = await store.rename_session(alice.id, first.id, "renamed")
    assert renamed.title == "renamed" and renamed.updated_at > first.updated_at
    assert [s.id for s in await store.list_sessions(alice.id)] == [first.id, second.id]
    assert [s.id for s in await store.list_sessions(alice.id, limit=1, offset=1)] == [second.id]


async def test_begin_turn_creates_a_session(store: SqlStore, alice: UserRecord) -> None:
    text = "Explain how tides work, with a diagram, and mention the moon and the sun too."
    attachment = {"type": "file", "url": "https://example.test/a.png", "media_type": "image/png"}
    started = await store.begin_turn(
        user_id=alice.id,
        session_id=None,
        client_id="c1",
        text=text,
        attachments=[attachment],
        model="demo",
        mode="ask",
        run_id="run-given-by-caller",
    )
    assert started.session_created and not started.duplicate
    assert started.session.title == text[:50] and len(started.session.title) == 50
    assert started.user_message.parts == [{"type": "text", "text": text}, attachment]
    assert started.user_message.client_id == "c1"
    assert started.user_message.role == "user"

    run = started.run
    assert run.id == "run-given-by-caller"
    assert (run.status, run.model, run.mode) == ("running", "demo", "ask")
    assert run.user_message_id == started.user_message.id
    assert run.started_at is not None and run.finished_at is None
    assert run.created_at.tzinfo is not None
    assert await store.get_run(alice.id, run.id) == run
    assert await store.run_for_client_id(alice.id, "c1") == run

    page = await store.list_messages(alice.id, started.session.id)
    assert [m.id for m in page.items] == [started.user_message.id, run.message_id]
    answer = page.items[1]
    assert (answer.role, answer.parts, answer.status) == ("assistant", [], "streaming")
    assert answer.run_id == run.id and page.next_cursor is None


async def test_begin_turn_on_an_existing_session(store: SqlStore, alice: UserRecord) -> None:
    session = await store.create_session(alice.id, "kept")
    first = await turn(store, alice, "one", session_id=session.id)
    second = await turn(store, alice, "two", session_id=session.id)
    assert not first.session_created and not second.session_created
    assert second.session.title == "kept"
    assert second.session.updated_at > session.updated_at
    assert (await store.latest_run(alice.id, session.id)) == second.run
    assert len((await store.list_messages(alice.id, session.id)).items) == 4
    assert len(await store.list_sessions(alice.id)) == 1


async def test_repeated_client_id_creates_nothing(
    store: SqlStore, alice: UserRecord, bob: UserRecord, database_url: str
) -> None:
    first = await turn(store, alice, client_id="same")
    again = await turn(store, alice, "different text", client_id="same")
    assert again.duplicate and not again.session_created
    assert (again.run, again.user_message, again.session) == (
        first.run,
        first.user_message,
        first.session,
    )
    assert await count(database_url, Session, user_id=alice.id) == 1
    assert await count(database_url, Message, user_id=alice.id) == 2
    assert await count(database_url, Run, user_id=alice.id) == 1
    # Client ids are unique per user, not globally.
    assert not (await turn(store, bob, client_id="same")).duplicate


async def test_concurrent_repeated_client_id_starts_one_run(
    store: SqlStore, alice: UserRecord, database_url: str
) -> None:
    results = await asyncio.gather(*(turn(store, alice, client_id="race") for _ in range(6)))
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.run.id for r in results}) == 1
    assert len({r.session.id for r in results}) == 1
    assert await count(database_url, Session, user_id=alice.id) == 1
    assert await count(database_url, Message, user_id=alice.id) == 2
    assert await count(database_url, Run, user_id=alice.id) == 1


async def test_finish_run_sums_usage_and_saves_the_answer(
    store: SqlStore, alice: UserRecord, database_url: str
) -> None:
    started = await turn(store, alice)
    run_id = started.run.id
    await store.add_usage(usage(run_id, alice, 10, 0.25))
    await store.add_usage(usage(run_id, alice, 5, None))
    await store.add_usage(usage(run_id, alice, 1, 0.5))
    parts = [{"type": "text", "text": "Tides are..."}]
    run = await store.finish_run(
        run_id, status="completed", reason="stop", error=None, parts=parts,
        message_status="complete",
    )  # fmt: skip
    assert (run.status, run.reason, run.error) == ("completed", "stop", None)
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (16, 32, 0.75)
    assert run.finished_at is not None and run.finished_at >= started.run.created_at
    answer = (await store.list_messages(alice.id, started.session.id)).items[1]
    assert (answer.parts, answer.status) == (parts, "complete")

    # A final run is returned unchanged, and its message is not touched again.
    again = await store.finish_run(
        run_id, status="failed", reason="error", error="boom", parts=[],
        message_status="error",
    )  # fmt: skip
    assert again == run == await store.get_run(alice.id, run_id)
    assert (await store.list_messages(alice.id, started.session.id)).items[1] == answer
    assert await store.runs_with_status("running") == []
    assert await store.runs_with_status("completed") == [run]
    assert await count(database_url, Usage, run_id=run_id) == 3

    with pytest.raises(NotFoundError):
        await store.finish_run(
            "no-such-run", status="failed", reason="x", error=None, parts=[],
            message_status="error",
        )  # fmt: skip


async def test_finish_run_without_usage_has_no_cost(store: SqlStore, alice: UserRecord) -> None:
    started = await turn(store, alice)
    run = await store.finish_run(
        started.run.id, status="cancelled", reason="cancelled", error=None, parts=[],
        message_status="cancelled",
    )  # fmt: skip
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (0, 0, None)


async def test_finishing_a_run_has_a_single_winner(store: SqlStore, alice: UserRecord) -> None:
    started = await turn(store, alice)
    statuses: list[FinalRunStatus] = ["completed", "failed", "interrupted", "cancelled"] * 3
    results = await asyncio.gather(
        *(
            store.finish_run(
                started.run.id,
                status=status,
                reason=status,
                error=None,
                parts=[{"type": "text", "text": status}],
                message_status="complete",
            )
            for status in statuses
        )
    )
    assert len(set(results)) == 1
    winner = results[0].status
    answer = (await store.list_messages(alice.id, started.session.id)).items[1]
    assert answer.parts == [{"type": "text", "text": winner}]


async def test_user_cost(store: SqlStore, alice: UserRecord, bob: UserRecord) -> None:
    assert await store.user_cost(alice.id) == 0.0
    first, second = await turn(store, alice), await turn(store, alice)
    assert await store.add_usage(usage(first.run.id, alice, 1, 0.125)) == pytest.approx(0.125)
    assert await store.add_usage(usage(second.run.id, alice, 1, 0.25)) == pytest.approx(0.375)
    assert await store.add_usage(usage(second.run.id, alice, 1, None)) == pytest.approx(0.375)
    await store.add_usage(usage((await turn(store, bob)).run.id, bob, 1, 4.0))
    assert await store.user_cost(alice.id) == pytest.approx(0.375)
    assert await store.user_cost(bob.id) == pytest.approx(4.0)


async def test_finish_run_appends_history_once(store: SqlStore, alice: UserRecord) -> None:
    started = await turn(store, alice)
    kwargs: dict[str, Any] = {
        "status": "completed",
        "reason": "completed",
        "error": None,
        "parts": [],
        "message_status": "complete",
    }
    await store.finish_run(started.run.id, history=[{"n": 1}, {"n": 2}], **kwargs)
    # The loser of a finish race changes nothing, its history included.
    await store.finish_run(started.run.id, history=[{"n": 3}], **kwargs)
    assert await store.load_history(started.session.id) == [{"n": 1}, {"n": 2}]


async def test_continuation_and_run_lookups(store: SqlStore, alice: UserRecord) -> None:
    started = await turn(store, alice, client_id="c")
    paused = await store.finish_run(
        started.run.id, status="paused", reason="confirmation", error=None,
        parts=[{"type": "tool", "state": "awaiting"}], message_status="complete",
    )  # fmt: skip
    assert await store.runs_with_status("paused") == [paused]
    continued = await store.start_continuation(
        user_id=alice.id,
        session_id=started.session.id,
        message_id=started.run.message_id,
        model="demo",
        mode="agent",
    )
    assert continued.status == "running" and continued.id != paused.id
    assert continued.message_id == paused.message_id and continued.user_message_id is None
    assert await store.latest_run(alice.id, started.session.id) == continued
    assert await store.get_run_any(continued.id) == continued
    assert await store.get_run_any("no-such-run") is None
    assert await store.runs_with_status("running") == [continued]
    # The client id still names the run its message started.
    assert await store.run_for_client_id(alice.id, "c") == paused
    assert await store.run_for_client_id(alice.id, "other") is None
    answer = (await store.list_messages(alice.id, started.session.id)).items[1]
    assert (answer.status, answer.run_id) == ("streaming", continued.id)

    with pytest.raises(NotFoundError):  # only an assistant message can be continued
        await store.start_continuation(
            user_id=alice.id,
            session_id=started.session.id,
            message_id=started.user_message.id,
            model="demo",
            mode="agent",
        )
    empty = await store.create_session(alice.id)
    assert await store.latest_run(alice.id, empty.id) is None


@pytest.mark.parametrize("limit", [1, 7, 10, 100])
async def test_message_pages_cover_every_message_once(
    store: SqlStore, alice: UserRecord, limit: int
) -> None:
    session = await store.create_session(alice.id)
    for i in range(10):
        await turn(store, alice, f"message {i}", session_id=session.id)
    everything = (await store.list_messages(alice.id, session.id, limit=1000)).items
    assert len(everything) == 20
    assert [m.parts[0]["text"] for m in everything[::2]] == [f"message {i}" for i in range(10)]

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.list_messages(alice.id, session.id, limit=limit, before=cursor)
        assert 0 < len(page.items) <= limit
        pages.append([m.id for m in page.items])
        if page.next_cursor is None:
            break
        assert page.next_cursor == page.items[0].id
        cursor = page.next_cursor
    # Pages go towards older messages; within a page, oldest first.
    assert [m for page_ids in reversed(pages) for m in page_ids] == [m.id for m in everything]
    assert len(pages) == -(-20 // limit)

    with pytest.raises(NotFoundError):
        await store.list_messages(alice.id, session.id, before="no-such-message")


async def test_history_is_loaded_in_append_order(store: SqlStore, alice: UserRecord) -> None:
    first = await turn(store, alice)
    session_id = first.session.id
    second = await turn(store, alice, session_id=session_id)
    other = await turn(store, alice)
    await store.append_history(session_id=session_id, run_id=first.run.id, messages=[{"n": 1}])
    await store.append_history(
        session_id=other.session.id, run_id=other.run.id, messages=[{"n": "other"}]
    )
    await store.append_history(
        session_id=session_id, run_id=second.run.id, messages=[{"n": 2}, {"n": 3}]
    )
    await store.append_history(session_id=session_id, run_id=second.run.id, messages=[])
    await store.append_history(
        session_id=session_id, run_id=first.run.id, messages=[{"n": 4, "nested": {"a": [1]}}]
    )
    assert await store.load_history(session_id) == [
        {"n": 1},
        {"n": 2},
        {"n": 3},
        {"n": 4, "nested": {"a": [1]}},
    ]
    assert await store.load_history(other.session.id) == [{"n": "other"}]
    assert await store.load_history("no-such-session") == []


async def test_delete_session_removes_its_records(
    store: SqlStore, alice: UserRecord, database_url: str
) -> None:
    doomed = await turn(store, alice, client_id="doomed")
    session_id = doomed.session.id
    await turn(store, alice, session_id=session_id)
    kept = await turn(store, alice)
    await store.append_history(session_id=session_id, run_id=doomed.run.id, messages=[{"a": 1}])
    await store.append_history(session_id=kept.session.id, run_id=kept.run.id, messages=[{}])
    await store.add_usage(usage(doomed.run.id, alice, 3, 1.5))

    await store.delete_session(alice.id, session_id)
    with pytest.raises(NotFoundError):
        await store.get_session(alice.id, session_id)
    assert await store.get_run_any(doomed.run.id) is None
    assert await store.load_history(session_id) == []
    for table in (Message, Run, History):
        assert await count(database_url, table, session_id=session_id) == 0
    # Usage is billing: it outlives the session.
    assert await store.user_cost(alice.id) == pytest.approx(1.5)
    assert [s.id for s in await store.list_sessions(alice.id)] == [kept.session.id]
    assert len((await store.list_messages(alice.id, kept.session.id)).items) == 2
    assert await store.load_history(kept.session.id) == [{}]
    # The client id of a deleted message is free again.
    assert not (await turn(store, alice, client_id="doomed")).duplicate
