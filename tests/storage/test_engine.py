"""Engines and migrations: URLs, SQLite connection settings, and that the packaged migrations
apply idempotently, concurrently, and produce exactly the schema of `storage.tables`."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection

from rillet.errors import ConfigurationError, StorageError
from rillet.storage.engine import MIGRATIONS, alembic_config, async_url, make_engine
from rillet.storage.sql import SqlStore
from rillet.storage.tables import Base


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_start_twice_and_concurrently_is_idempotent(database_url: str) -> None:
    stores = [SqlStore(database_url) for _ in range(3)]
    try:
        # Several processes starting at once against one database must not race.
        await asyncio.gather(*(store.start() for store in stores))
        await stores[0].start()
        assert all([await store.ping() for store in stores])
        user = await stores[1].ensure_user("alice")
        assert (await stores[2].ensure_user("alice")).id == user.id
    finally:
        for store in stores:
            await store.close()

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_current_revision) == head
    finally:
        await engine.dispose()


async def test_migrations_match_models(database_url: str) -> None:
    store = SqlStore(database_url)
    await store.start()
    await store.close()
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_schema_diff) == []
    finally:
        await engine.dispose()


async def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    store = SqlStore(url)
    await store.start()
    await store.close()
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 15_000
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 1  # NORMAL
    finally:
        await engine.dispose()


def test_async_url_adds_the_async_driver() -> None:
    assert async_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_url("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"


@pytest.mark.parametrize("url", ["nonsense", "mysql+aiomysql://u@h/db", "sqlite+pysqlite:///x"])
def test_unusable_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SqlStore(url)


async def test_unreachable_database_is_a_storage_error(tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}")
    try:
        assert await store.ping() is False
        with pytest.raises(StorageError):
            await store.start()
        with pytest.raises(StorageError):
            await store.ensure_user("alice")
    finally:
        await store.close()
    # When a connection fails to open, aiosqlite stops its worker thread without awaiting it
    # (omnilib/aiosqlite#259); the worker then reports back to this test's event loop, which
    # must still be running, or the thread dies with "Event loop is closed".
    for thread in set(threading.enumerate()) - threads_before:
        await asyncio.to_thread(thread.join, 5)


def test_migrations_are_packaged() -> None:
    assert (MIGRATIONS / "env.py").is_file()
    assert (MIGRATIONS / "script.py.mako").is_file()
    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == "0002"


async def test_unreachable_postgres_is_a_storage_error() -> None:
    # A port the OS just handed out and nobody listens on.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = SqlStore(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/rillet")
    try:
        assert await store.ping() is False
        with pytest.raises(StorageError):
            await store.start()
    finally:
        await store.close()
