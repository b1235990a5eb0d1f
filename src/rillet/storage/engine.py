"""Engines and migrations for `SqlStore`: one async engine per database URL, set up for the
dialect (SQLite gets WAL, foreign keys and a busy timeout on every connection), and
`apply_migrations`, which brings the schema to the newest Alembic revision in
`storage/migrations/`. Several processes may start at once against one database, so the upgrade
runs under a lock: a PostgreSQL advisory lock, or SQLite's database write lock.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import (
    ArgumentError,
    InvalidRequestError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from rillet.errors import ConfigurationError

MIGRATIONS = Path(__file__).with_name("migrations")

MIGRATION_LOCK_KEY = 0x52494C4C4554
"""PostgreSQL advisory lock key held while migrating ("RILLET" in ASCII)."""

SQLITE_BUSY_TIMEOUT_MS = 15_000
WAL_ATTEMPTS = 100
WAL_RETRY_DELAY_S = 0.1

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
"""The driver used when a URL names only the database (`postgresql://`, `sqlite:///`)."""


def async_url(database_url: str) -> str:
    """`database_url` with an async driver, e.g. `postgresql://` -> `postgresql+asyncpg://`."""
    if database_url.startswith("postgres://"):
        database_url = "postgresql://" + database_url.removeprefix("postgres://")
    scheme, sep, rest = database_url.partition("://")
    return f"{ASYNC_DRIVERS.get(scheme, scheme)}{sep}{rest}"


POOL_TIMEOUT_S = 120.0


def make_engine(database_url: str) -> AsyncEngine:
    """An async engine for `database_url` (`sqlite+aiosqlite:///path.db`,
    `postgresql+asyncpg://user@host/db`). Raises `ConfigurationError` for an unusable URL."""
    try:
        url = make_url(async_url(database_url))
        if url.get_backend_name() not in ASYNC_DRIVERS:
            raise ConfigurationError(f"unsupported database {url.get_backend_name()!r}")
        # Under a burst (hundreds of runs starting at once) a caller waits its turn for a
        # connection rather than failing: the pool is the queue.
        options: dict[str, Any] = {"pool_timeout": POOL_TIMEOUT_S}
        if url.get_backend_name() == "postgresql":
            # Detects connections the server closed (restarts, idle timeouts) before use.
            options.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        else:
            # SQLite has one writer at a time; more connections only contend for its lock.
            options.update(pool_size=5, max_overflow=5)
        engine = create_async_engine(url, **options)
    except (ArgumentError, InvalidRequestError, NoSuchModuleError, ValueError) as exc:
        raise ConfigurationError(f"invalid database URL: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
    return engine


def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    # Per connection settings. WAL is a property of the database file, set by `_enable_wal`.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # With WAL, NORMAL keeps the file consistent after a crash and skips an fsync per commit;
        # only the last commits can be lost, and only to a power failure, not a process crash.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


async def _enable_wal(engine: AsyncEngine) -> None:
    """Puts the SQLite file in WAL mode, so readers proceed while one writer commits.

    Switching needs the file to itself, and SQLite refuses at once, without waiting for the busy
    timeout, while another connection writes (e.g. a process starting at the same moment).
    """
    for attempt in range(WAL_ATTEMPTS):
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            return
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or attempt == WAL_ATTEMPTS - 1:
                raise
            await asyncio.sleep(WAL_RETRY_DELAY_S)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic `Config` for the packaged migrations, optionally bound to `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def apply_migrations(engine: AsyncEngine) -> None:
    """Upgrade the database to the newest revision, in one transaction, under a lock.

    Both databases have transactional DDL, so a failed upgrade leaves the schema untouched.
    """
    if engine.dialect.name == "sqlite":
        await _enable_wal(engine)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Held until the transaction ends; a process that waited then finds nothing to do.
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        else:
            # The sqlite3 module would not open a transaction for DDL; take the write lock now.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        await conn.run_sync(_upgrade)
