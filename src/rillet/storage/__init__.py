"""Durable records: users, keys, sessions, messages, runs, model history and usage."""

from __future__ import annotations

from rillet.storage.base import (
    ApiKeyRecord,
    MessageRecord,
    RunRecord,
    SessionRecord,
    Store,
    TurnStart,
    UsageRecord,
    UserRecord,
)

__all__ = [
    "ApiKeyRecord",
    "MessageRecord",
    "RunRecord",
    "SessionRecord",
    "Store",
    "TurnStart",
    "UsageRecord",
    "UserRecord",
]
