"""Fixtures for the storage tests: every test runs once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rillet.storage.base import UserRecord
from rillet.storage.sql import SqlStore
from tests.support.databases import database

DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=DATABASES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """An empty database of each kind."""
    async with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    """A started store on an empty database, closed (engine disposed) afterwards."""
    store = SqlStore(database_url)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def alice(store: SqlStore) -> UserRecord:
    return await store.ensure_user("alice")


@pytest.fixture
async def bob(store: SqlStore) -> UserRecord:
    return await store.ensure_user("bob")
