"""Conversions from table rows (`storage.tables`) to the immutable records of `storage.base`.

Columns holding closed sets of strings (roles, statuses, modes) are plain strings in SQL; they
are only ever written from the typed records, so they are cast back to their `Literal` types.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import cast

from rillet.events import MessageStatus, Mode, RunStatus
from rillet.storage.base import (
    ApiKeyRecord,
    MessageRecord,
    Role,
    RunRecord,
    SessionRecord,
    UserRecord,
)
from rillet.storage.tables import ApiKey, Message, Run, Session, User


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


def user_record(row: User) -> UserRecord:
    return UserRecord(id=row.id, name=row.name, created_at=row.created_at)


def api_key_record(row: ApiKey) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        user_id=row.user_id,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def session_record(row: Session) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        user_id=row.user_id,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def message_record(row: Message) -> MessageRecord:
    return MessageRecord(
        id=row.id,
        session_id=row.session_id,
        role=cast("Role", row.role),
        parts=list(row.parts),
        status=cast("MessageStatus", row.status),
        created_at=row.created_at,
        run_id=row.run_id,
        client_id=row.client_id,
    )


def run_record(row: Run) -> RunRecord:
    return RunRecord(
        id=row.id,
        session_id=row.session_id,
        user_id=row.user_id,
        message_id=row.message_id,
        user_message_id=row.user_message_id,
        status=cast("RunStatus", row.status),
        model=row.model,
        mode=cast("Mode", row.mode),
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        reason=row.reason,
        error=row.error,
        input_tokens=int(row.input_tokens),
        output_tokens=int(row.output_tokens),
        cost_usd=None if row.cost_usd is None else float(row.cost_usd),
    )
