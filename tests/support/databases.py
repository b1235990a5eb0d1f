"""Throwaway databases for tests: a fresh, uniquely named PostgreSQL database per test (on the
local server, `postgres` user, trust auth; override with `RILLET_TEST_POSTGRES_URL`), and SQLite
files in a temporary directory. An unreachable PostgreSQL raises: tests that need it fail, they
are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get("RILLET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
"""A database to connect to while creating and dropping the test databases."""

PREFIX = "rillet_"


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(ADMIN_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(f"PostgreSQL at {ADMIN_URL} is not reachable: {exc}") from exc


async def fresh_postgres_url() -> str:
    """Creates an empty database `rillet_<hex>` and returns its `postgresql+asyncpg://` URL."""
    name = f"{PREFIX}{uuid.uuid4().hex}"
    conn = await _admin()
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


async def drop_postgres(url: str) -> None:
    """Drops a database made by `fresh_postgres_url`, even if connections are still open."""
    name = make_url(url).database
    if name is None or not name.startswith(PREFIX):
        raise ValueError(f"not a test database: {url}")
    conn = await _admin()
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database's URL for the duration of the block."""
    url = await fresh_postgres_url()
    try:
        yield url
    finally:
        await drop_postgres(url)


def sqlite_url(directory: Path, name: str = "rillet.db") -> str:
    """A `sqlite+aiosqlite://` URL for a database file in `directory`."""
    return f"sqlite+aiosqlite:///{directory / name}"


@asynccontextmanager
async def database(kind: str, directory: Path) -> AsyncIterator[str]:
    """A fresh database URL of `kind` (`"sqlite"` or `"postgres"`) for the block."""
    if kind == "sqlite":
        yield sqlite_url(directory)
    elif kind == "postgres":
        async with postgres_database() as url:
            yield url
    else:
        raise ValueError(f"unknown database kind {kind!r}")
