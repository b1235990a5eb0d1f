"""`SqlStore`: the `Store` protocol on SQLAlchemy's asyncio ORM, for SQLite (aiosqlite) and
PostgreSQL (asyncpg). Every public method runs in its own transaction; SQLAlchemy and driver
errors leave as `StorageError`. Races between nodes are settled by the database: unique
constraints for repeated client message ids and user names, and conditional updates for
finishing a run, so two callers can never both win.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from alembic.util import CommandError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.expression import ScalarSelect

from rillet.errors import NotFoundError, StorageError
from rillet.events import FinalRunStatus, MessageStatus, Mode, RunStatus
from rillet.storage.base import (
    ApiKeyRecord,
    MessageRecord,
    Page,
    RunRecord,
    SessionRecord,
    Store,
    TurnStart,
    UsageRecord,
    UserRecord,
)
from rillet.storage.engine import apply_migrations, make_engine
from rillet.storage.rows import (
    api_key_record,
    message_record,
    new_id,
    run_record,
    session_record,
    user_record,
    utcnow,
)
from rillet.storage.tables import ApiKey, History, Message, Run, Session, Usage, User
from rillet.storage.turns import (
    find_turn,
    insert_continuation,
    insert_regeneration,
    insert_turn,
    owned_session,
)

PING_TIMEOUT_S = 5.0


class _ConflictError(StorageError):
    """A constraint refused a write; some callers expect this and read the winner instead."""


class SqlStore:
    """The `Store` on a SQL database.

    ```python
    store = SqlStore("sqlite+aiosqlite:///rillet.db")  # or "postgresql+asyncpg://..."
    await store.start()  # applies migrations
    ...
    await store.close()
    ```
    """

    def __init__(self, database_url: str) -> None:
        self._engine = make_engine(database_url)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed on success; database errors -> `StorageError`."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except IntegrityError as exc:
            raise _ConflictError(f"constraint violated: {exc.orig!r}") from exc
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"database error: {type(exc).__name__}") from exc

    async def start(self) -> None:
        try:
            await apply_migrations(self._engine)
        except (SQLAlchemyError, OSError, CommandError) as exc:
            raise StorageError(f"could not migrate the database: {exc}") from exc

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT_S), self._engine.connect() as conn:
                await conn.execute(select(1))
        except (SQLAlchemyError, OSError):
            return False
        return True

    # users and keys

    async def ensure_user(self, name: str) -> UserRecord:
        async with self._transaction() as db:
            found = await db.scalar(select(User).where(User.name == name))
        if found is not None:
            return user_record(found)
        try:
            async with self._transaction() as db:
                user = User(id=new_id(), name=name, created_at=utcnow())
                db.add(user)
        except _ConflictError:
            # Another caller created it first.
            async with self._transaction() as db:
                user = (await db.scalars(select(User).where(User.name == name))).one()
        return user_record(user)

    async def create_api_key(self, user_id: str, key_hash: str, prefix: str) -> ApiKeyRecord:
        async with self._transaction() as db:
            key = ApiKey(
                id=new_id(), user_id=user_id, key_hash=key_hash, prefix=prefix, created_at=utcnow()
            )
            db.add(key)
        return api_key_record(key)

    async def user_for_key(self, key_hash: str) -> UserRecord | None:
        query = (
            select(User)
            .join(ApiKey, ApiKey.user_id == User.id)
            .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
        )
        async with self._transaction() as db:
            user = await db.scalar(query)
        return None if user is None else user_record(user)

    async def list_api_keys(self, user_id: str) -> list[ApiKeyRecord]:
        query = select(ApiKey).where(ApiKey.user_id == user_id)
        async with self._transaction() as db:
            keys = await db.scalars(query.order_by(ApiKey.created_at, ApiKey.id))
            return [api_key_record(key) for key in keys]

    async def revoke_api_key(self, user_id: str, key_id: str) -> None:
        """Revoking a revoked key keeps its first `revoked_at`."""
        async with self._transaction() as db:
            key = await db.scalar(
                select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id)
            )
            if key is None:
                raise NotFoundError("API key not found")
            if key.revoked_at is None:
                key.revoked_at = utcnow()

    # sessions

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord:
        async with self._transaction() as db:
            return session_record(await owned_session(db, user_id, session_id))

    async def list_sessions(
        self, user_id: str, *, limit: int = 50, offset: int = 0
    ) -> list[SessionRecord]:
        query = (
            select(Session)
            .where(Session.user_id == user_id)
            .order_by(Session.updated_at.desc(), Session.id.desc())
            .limit(limit)
            .offset(offset)
        )
        async with self._transaction() as db:
            return [session_record(row) for row in await db.scalars(query)]

    async def create_session(
        self, user_id: str, title: str = "", *, session_id: str | None = None
    ) -> SessionRecord:
        """See `Store.create_session`."""
        now = utcnow()
        try:
            async with self._transaction() as db:
                session = Session(
                    id=session_id or new_id(),
                    user_id=user_id,
                    title=title,
                    created_at=now,
                    updated_at=now,
                )
                db.add(session)
        except _ConflictError:
            if session_id is None:
                raise
            # The id is taken: by this user (a concurrent first message), or by someone else.
            return await self.get_session(user_id, session_id)
        return session_record(session)

    async def rename_session(self, user_id: str, session_id: str, title: str) -> SessionRecord:
        async with self._transaction() as db:
            session = await owned_session(db, user_id, session_id)
            session.title = title
            session.updated_at = utcnow()
        return session_record(session)

    async def delete_session(self, user_id: str, session_id: str) -> None:
        """Deletes the session with its messages, runs and history; usage rows stay (billing)."""
        async with self._transaction() as db:
            await owned_session(db, user_id, session_id)
            # Children first, so this does not depend on the database enforcing cascades.
            for table in (History, Run, Message):
                await db.execute(delete(table).where(table.session_id == session_id))
            await db.execute(delete(Session).where(Session.id == session_id))

    # turns and runs

    async def begin_turn(
        self,
        *,
        user_id: str,
        session_id: str | None,
        client_id: str | None,
        text: str,
        attachments: list[dict[str, Any]] | None,
        model: str,
        mode: Mode,
        run_id: str | None = None,
    ) -> TurnStart:
        """See `Store.begin_turn`. The user message's `run_id` is the run it started. A repeated
        `client_id` returns the first turn even when `session_id` names another session."""
        if client_id is not None:
            async with self._transaction() as db:
                found = await find_turn(db, user_id, client_id)
            if found is not None:
                return found
        try:
            async with self._transaction() as db:
                return await insert_turn(
                    db,
                    user_id=user_id,
                    session_id=session_id,
                    client_id=client_id,
                    text=text,
                    attachments=attachments,
                    model=model,
                    mode=mode,
                    run_id=run_id or new_id(),
                )
        except _ConflictError:
            if client_id is None:
                raise
            # A concurrent call with the same client id committed first: its turn is the turn.
            async with self._transaction() as db:
                found = await find_turn(db, user_id, client_id)
            if found is None:
                raise
            return found

    async def start_continuation(
        self, *, user_id: str, session_id: str, message_id: str, model: str, mode: Mode
    ) -> RunRecord:
        """See `Store.start_continuation`. The message becomes `streaming` again and names the
        new run as its `run_id`; the run has no `user_message_id`."""
        async with self._transaction() as db:
            return await insert_continuation(
                db,
                user_id=user_id,
                session_id=session_id,
                message_id=message_id,
                model=model,
                mode=mode,
            )

    async def begin_regeneration(
        self,
        *,
        user_id: str,
        session_id: str,
        model: str,
        mode: Mode,
        message_id: str | None = None,
        run_id: str | None = None,
    ) -> TurnStart:
        async with self._transaction() as db:
            return await insert_regeneration(
                db,
                user_id=user_id,
                session_id=session_id,
                model=model,
                mode=mode,
                message_id=message_id,
                run_id=run_id or new_id(),
            )

    async def get_run(self, user_id: str, run_id: str) -> RunRecord:
        async with self._transaction() as db:
            run = await db.scalar(select(Run).where(Run.id == run_id, Run.user_id == user_id))
        if run is None:
            raise NotFoundError("run not found")
        return run_record(run)

    async def run_for_client_id(self, user_id: str, client_id: str) -> RunRecord | None:
        query = (
            select(Run)
            .join(Message, Run.user_message_id == Message.id)
            .where(Message.user_id == user_id, Message.client_id == client_id)
            .order_by(Run.seq)
            .limit(1)
        )
        async with self._transaction() as db:
            run = await db.scalar(query)
        return None if run is None else run_record(run)

    async def get_run_any(self, run_id: str) -> RunRecord | None:
        async with self._transaction() as db:
            run = await db.scalar(select(Run).where(Run.id == run_id))
        return None if run is None else run_record(run)

    async def runs_with_status(self, status: RunStatus) -> list[RunRecord]:
        async with self._transaction() as db:
            runs = await db.scalars(select(Run).where(Run.status == status).order_by(Run.seq))
            return [run_record(run) for run in runs]

    async def latest_run(self, user_id: str, session_id: str) -> RunRecord | None:
        """The session's most recently created run; `NotFoundError` if not the user's session."""
        async with self._transaction() as db:
            await owned_session(db, user_id, session_id)
            run = await db.scalar(
                select(Run).where(Run.session_id == session_id).order_by(Run.seq.desc()).limit(1)
            )
        return None if run is None else run_record(run)

    async def finish_run(
        self,
        run_id: str,
        *,
        status: FinalRunStatus,
        reason: str,
        error: str | None,
        parts: list[dict[str, Any]],
        message_status: MessageStatus,
        history: list[dict[str, Any]] | None = None,
    ) -> RunRecord:
        """See `Store.finish_run`. Raises `NotFoundError` for an unknown run. `cost_usd` is None
        when no usage row has a known cost."""

        def total(column: InstrumentedAttribute[Any]) -> ScalarSelect[Any]:
            return select(func.sum(column)).where(Usage.run_id == run_id).scalar_subquery()

        finish = (
            update(Run)
            .where(Run.id == run_id, Run.status == "running")
            .values(
                status=status,
                reason=reason,
                error=error,
                finished_at=utcnow(),
                input_tokens=func.coalesce(total(Usage.input_tokens), 0),
                output_tokens=func.coalesce(total(Usage.output_tokens), 0),
                cost_usd=total(Usage.cost_usd),
            )
        )
        async with self._transaction() as db:
            # Core execution: a plain conditional UPDATE whose row count says who won.
            won = (await (await db.connection()).execute(finish)).rowcount == 1
            run = await db.scalar(select(Run).where(Run.id == run_id))
            if run is None:
                raise NotFoundError("run not found")
            if won:
                await db.execute(
                    update(Message)
                    .where(Message.id == run.message_id)
                    .values(parts=parts, status=message_status)
                )
                if history:
                    db.add(
                        History(
                            session_id=run.session_id,
                            run_id=run_id,
                            messages=history,
                            created_at=utcnow(),
                        )
                    )
        return run_record(run)

    async def add_usage(self, usage: UsageRecord) -> float:
        """See `Store.add_usage`; the user's running total moves in the same transaction."""
        async with self._transaction() as db:
            db.add(
                Usage(
                    id=usage.id or new_id(),
                    run_id=usage.run_id,
                    user_id=usage.user_id,
                    model=usage.model,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_usd=usage.cost_usd,
                    latency_ms=usage.latency_ms,
                    created_at=usage.created_at,
                )
            )
            if usage.cost_usd:
                await db.execute(
                    update(User)
                    .where(User.id == usage.user_id)
                    .values(cost_usd_total=User.cost_usd_total + usage.cost_usd)
                )
            total = await db.scalar(select(User.cost_usd_total).where(User.id == usage.user_id))
        return float(total or 0.0)

    async def user_cost(self, user_id: str) -> float:
        async with self._transaction() as db:
            cost = await db.scalar(select(User.cost_usd_total).where(User.id == user_id))
        return float(cost or 0.0)

    # messages

    async def list_messages(
        self, user_id: str, session_id: str, *, limit: int = 100, before: str | None = None
    ) -> Page:
        """See `Store.list_messages`. The cursor is the id of the oldest message of the previous
        page; an id that is not a message of this session raises `NotFoundError`."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        query = select(Message).where(Message.session_id == session_id)
        async with self._transaction() as db:
            await owned_session(db, user_id, session_id)
            if before is not None:
                position = await db.scalar(
                    select(Message.position).where(
                        Message.id == before, Message.session_id == session_id
                    )
                )
                if position is None:
                    raise NotFoundError("message cursor not found")
                query = query.where(Message.position < position)
            newest_first = list(
                await db.scalars(query.order_by(Message.position.desc()).limit(limit + 1))
            )
        rows = newest_first[:limit][::-1]
        items: list[MessageRecord] = [message_record(row) for row in rows]
        more = len(newest_first) > limit
        return Page(items=items, next_cursor=items[0].id if more else None)

    # model history

    async def append_history(
        self, *, session_id: str, run_id: str, messages: list[dict[str, Any]]
    ) -> None:
        if not messages:
            return
        async with self._transaction() as db:
            db.add(
                History(
                    session_id=session_id, run_id=run_id, messages=messages, created_at=utcnow()
                )
            )

    async def load_history(self, session_id: str) -> list[dict[str, Any]]:
        query = select(History.messages).where(History.session_id == session_id)
        async with self._transaction() as db:
            batches = await db.scalars(query.order_by(History.id))
            return [message for batch in batches for message in batch]


if TYPE_CHECKING:
    # mypy checks here that `SqlStore` satisfies the `Store` protocol.
    _store: Store = SqlStore("sqlite+aiosqlite://")
