"""The writes that start runs, as steps inside a `SqlStore` transaction: a turn (session, user
message, assistant message, run), a continuation run, and a regeneration (a new answer in place of
the last one). Also the ownership check that scopes every session lookup by its user. The caller
owns the transaction and the error translation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from rillet.errors import InvalidFrameError, NotFoundError, StorageError
from rillet.events import MessageStatus, Mode
from rillet.storage.base import Role, RunRecord, TurnStart
from rillet.storage.rows import message_record, new_id, run_record, session_record, utcnow
from rillet.storage.tables import History, Message, Run, Session

TITLE_LENGTH = 50
"""A session created by a turn is titled with this many first characters of the message."""


async def owned_session(db: AsyncSession, user_id: str, session_id: str) -> Session:
    """The session, if it is `user_id`'s; else `NotFoundError`, as if it did not exist."""
    session = await db.scalar(
        select(Session).where(Session.id == session_id, Session.user_id == user_id)
    )
    if session is None:
        raise NotFoundError("session not found")
    return session


async def find_turn(db: AsyncSession, user_id: str, client_id: str) -> TurnStart | None:
    """The turn whose user message carries `client_id`, marked `duplicate`, if any."""
    message = await db.scalar(
        select(Message).where(Message.user_id == user_id, Message.client_id == client_id)
    )
    if message is None:
        return None
    run = await db.scalar(
        select(Run).where(Run.user_message_id == message.id).order_by(Run.seq).limit(1)
    )
    if run is None:
        raise StorageError(f"message {message.id} has no run")
    session = await db.get_one(Session, message.session_id)
    return TurnStart(
        session=session_record(session),
        session_created=False,
        user_message=message_record(message),
        run=run_record(run),
        duplicate=True,
    )


async def insert_turn(
    db: AsyncSession,
    *,
    user_id: str,
    session_id: str | None,
    client_id: str | None,
    text: str,
    attachments: list[dict[str, Any]] | None,
    model: str,
    mode: Mode,
    run_id: str,
) -> TurnStart:
    """Adds a turn. A repeated `client_id` fails the flush with an `IntegrityError`."""
    now = utcnow()
    if session_id is None:
        session = Session(
            id=new_id(), user_id=user_id, title=text[:TITLE_LENGTH], created_at=now, updated_at=now
        )
        db.add(session)
    else:
        session = await owned_session(db, user_id, session_id)
        session.updated_at = now
    # Flushes follow foreign keys (the tables have no ORM relationships to order them by);
    # they also keep `position` in insertion order and surface a repeated `client_id` early.
    await db.flush()
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}, *(attachments or [])]
    question = new_message(session, "user", parts, "complete", run_id, now)
    question.client_id = client_id
    db.add(question)
    await db.flush()
    answer = new_message(session, "assistant", [], "streaming", run_id, now)
    db.add(answer)
    await db.flush()
    run = new_run(session, answer.id, question.id, model, mode, run_id, now)
    db.add(run)
    await db.flush()
    return TurnStart(
        session=session_record(session),
        session_created=session_id is None,
        user_message=message_record(question),
        run=run_record(run),
    )


async def insert_continuation(
    db: AsyncSession, *, user_id: str, session_id: str, message_id: str, model: str, mode: Mode
) -> RunRecord:
    """Adds a run that continues assistant message `message_id`, which becomes `streaming`
    again and names the new run as its `run_id`. The run has no `user_message_id`."""
    now = utcnow()
    session = await owned_session(db, user_id, session_id)
    message = await db.scalar(
        select(Message).where(
            Message.id == message_id,
            Message.session_id == session.id,
            Message.role == "assistant",
        )
    )
    if message is None:
        raise NotFoundError("message not found")
    run = new_run(session, message.id, None, model, mode, new_id(), now)
    db.add(run)
    message.run_id = run.id
    message.status = "streaming"
    session.updated_at = now
    await db.flush()
    return run_record(run)


async def insert_regeneration(
    db: AsyncSession,
    *,
    user_id: str,
    session_id: str,
    model: str,
    mode: Mode,
    message_id: str | None,
    run_id: str,
) -> TurnStart:
    """Replaces the session's last answer with a new run on its user message; see
    `Store.begin_regeneration`."""
    now = utcnow()
    session = await owned_session(db, user_id, session_id)
    in_session = Message.session_id == session.id
    question = await db.scalar(
        select(Message)
        .where(in_session, Message.role == "user")
        .order_by(Message.position.desc())
        .limit(1)
    )
    if question is None:
        raise NotFoundError("this session has no message to answer again")
    stale = list(
        await db.scalars(select(Message.id).where(in_session, Message.position > question.position))
    )
    if message_id is not None and message_id not in {question.id, *stale}:
        raise InvalidFrameError("only the last answer of a session can be regenerated")
    if stale:
        # Children first, as in `delete_session`; usage rows stay for billing.
        stale_runs = select(Run.id).where(Run.message_id.in_(stale))
        await db.execute(delete(History).where(History.run_id.in_(stale_runs)))
        await db.execute(delete(Run).where(Run.message_id.in_(stale)))
        await db.execute(delete(Message).where(Message.id.in_(stale)))
    session.updated_at = now
    answer = new_message(session, "assistant", [], "streaming", run_id, now)
    db.add(answer)
    await db.flush()
    run = new_run(session, answer.id, question.id, model, mode, run_id, now)
    db.add(run)
    question.run_id = run_id
    await db.flush()
    return TurnStart(
        session=session_record(session),
        session_created=False,
        user_message=message_record(question),
        run=run_record(run),
    )


def new_message(
    session: Session,
    role: Role,
    parts: list[dict[str, Any]],
    status: MessageStatus,
    run_id: str,
    now: datetime,
) -> Message:
    """A message row; a user message's `run_id` is the run it started."""
    return Message(
        id=new_id(),
        session_id=session.id,
        user_id=session.user_id,
        role=role,
        parts=parts,
        status=status,
        run_id=run_id,
        created_at=now,
    )


def new_run(
    session: Session,
    message_id: str,
    user_message_id: str | None,
    model: str,
    mode: Mode,
    run_id: str,
    now: datetime,
) -> Run:
    # A run is `running` from its creation, so it has started then too.
    return Run(
        id=run_id,
        session_id=session.id,
        user_id=session.user_id,
        message_id=message_id,
        user_message_id=user_message_id,
        status="running",
        model=model,
        mode=mode,
        created_at=now,
        started_at=now,
        input_tokens=0,
        output_tokens=0,
    )
