"""`SqlStore` for the AI SDK transports, on SQLite and PostgreSQL: sessions named by the client
(`create_session(session_id=...)`) and replacing a session's last answer (`begin_regeneration`)."""

from __future__ import annotations

import asyncio

import pytest

from rillet.errors import InvalidFrameError, NotFoundError
from rillet.storage.base import TurnStart, UserRecord
from rillet.storage.sql import SqlStore


async def turn(store: SqlStore, user: UserRecord, session_id: str, text: str) -> TurnStart:
    return await store.begin_turn(
        user_id=user.id,
        session_id=session_id,
        client_id=None,
        text=text,
        attachments=None,
        model="demo",
        mode="agent",
    )


async def answer(store: SqlStore, start: TurnStart, text: str) -> None:
    await store.finish_run(
        start.run.id,
        status="completed",
        reason="completed",
        error=None,
        parts=[{"type": "text", "text": text}],
        message_status="complete",
    )
    await store.append_history(
        session_id=start.session.id, run_id=start.run.id, messages=[{"run": start.run.id}]
    )


async def test_a_session_named_by_the_client(
    store: SqlStore, alice: UserRecord, bob: UserRecord
) -> None:
    session = await store.create_session(alice.id, "hello", session_id="chat-abc")
    assert (session.id, session.title) == ("chat-abc", "hello")
    # The same id again (a concurrent first message) is the same session, unchanged.
    assert await store.create_session(alice.id, "other", session_id="chat-abc") == session
    with pytest.raises(NotFoundError):
        await store.create_session(bob.id, "mine", session_id="chat-abc")
    racing = await asyncio.gather(
        *(store.create_session(alice.id, "x", session_id="chat-race") for _ in range(5))
    )
    assert {s.id for s in racing} == {"chat-race"}
    assert [s.id for s in await store.list_sessions(bob.id)] == []


async def test_regeneration_replaces_the_last_answer_and_its_history(
    store: SqlStore, alice: UserRecord
) -> None:
    await store.create_session(alice.id, session_id="chat-1")
    first = await turn(store, alice, "chat-1", "one")
    await answer(store, first, "first answer")
    second = await turn(store, alice, "chat-1", "two")
    await answer(store, second, "second answer")

    again = await store.begin_regeneration(
        user_id=alice.id,
        session_id="chat-1",
        model="bench",
        mode="ask",
        message_id=second.run.message_id,
    )
    assert again.user_message.id == second.user_message.id
    assert (again.run.user_message_id, again.run.model, again.run.mode) == (
        second.user_message.id,
        "bench",
        "ask",
    )
    assert again.run.status == "running" and not again.session_created
    messages = (await store.list_messages(alice.id, "chat-1")).items
    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"),
        ("assistant", "complete"),
        ("user", "complete"),
        ("assistant", "streaming"),
    ]
    assert messages[-1].id == again.run.message_id != second.run.message_id
    assert messages[2].run_id == again.run.id
    assert await store.get_run_any(second.run.id) is None
    assert await store.load_history("chat-1") == [{"run": first.run.id}]


async def test_regeneration_after_a_failed_answer_and_by_the_user_message_id(
    store: SqlStore, alice: UserRecord
) -> None:
    await store.create_session(alice.id, session_id="chat-2")
    start = await turn(store, alice, "chat-2", "one")
    again = await store.begin_regeneration(
        user_id=alice.id,
        session_id="chat-2",
        model="demo",
        mode="agent",
        message_id=start.user_message.id,
    )
    assert await store.get_run_any(start.run.id) is None
    assert len((await store.list_messages(alice.id, "chat-2")).items) == 2
    assert again.run.message_id != start.run.message_id


async def test_regeneration_refusals(store: SqlStore, alice: UserRecord, bob: UserRecord) -> None:
    await store.create_session(alice.id, session_id="chat-3")
    with pytest.raises(NotFoundError):
        await store.begin_regeneration(
            user_id=alice.id, session_id="chat-3", model="demo", mode="agent"
        )
    first = await turn(store, alice, "chat-3", "one")
    await answer(store, first, "a")
    await turn(store, alice, "chat-3", "two")
    with pytest.raises(InvalidFrameError):
        await store.begin_regeneration(
            user_id=alice.id,
            session_id="chat-3",
            model="demo",
            mode="agent",
            message_id=first.run.message_id,
        )
    with pytest.raises(NotFoundError):
        await store.begin_regeneration(
            user_id=bob.id, session_id="chat-3", model="demo", mode="agent"
        )
    assert len((await store.list_messages(alice.id, "chat-3")).items) == 4
