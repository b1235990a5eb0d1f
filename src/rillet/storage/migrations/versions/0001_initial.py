"""Initial schema: users, api_keys, sessions, messages, runs, usage and history, as in
`rillet.storage.tables` and frozen here (model changes need a new revision), with constraint and
index names from the metadata's naming convention.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=64)
TIME = sa.DateTime(timezone=True)
# SQLite only auto-increments a column declared exactly `INTEGER PRIMARY KEY`.
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _user_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
    )


def _session_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["session_id"], ["sessions.id"], name=f"fk_{table}_session_id_sessions", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", ID, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("revoked_at", TIME, nullable=True),
        _user_fk("api_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_user_id", "api_keys", ["user_id"])

    op.create_table(
        "sessions",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        _user_fk("sessions"),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_user_id_updated_at", "sessions", ["user_id", "updated_at"])

    op.create_table(
        "usage",
        sa.Column("id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        _user_fk("usage"),
        sa.PrimaryKeyConstraint("id", name="pk_usage"),
    )
    op.create_index("ix_usage_run_id", "usage", ["run_id"])
    op.create_index("ix_usage_user_id", "usage", ["user_id"])

    op.create_table(
        "messages",
        sa.Column("position", SERIAL, autoincrement=True, nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("parts", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(), nullable=True),
        sa.Column("run_id", ID, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        _session_fk("messages"),
        _user_fk("messages"),
        sa.PrimaryKeyConstraint("position", name="pk_messages"),
        sa.UniqueConstraint("id", name="uq_messages_id"),
        sa.UniqueConstraint("user_id", "client_id", name="uq_messages_user_id_client_id"),
    )
    op.create_index("ix_messages_session_id_position", "messages", ["session_id", "position"])

    op.create_table(
        "runs",
        sa.Column("seq", SERIAL, autoincrement=True, nullable=False),
        sa.Column("id", ID, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("user_message_id", ID, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("started_at", TIME, nullable=True),
        sa.Column("finished_at", TIME, nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_runs_message_id_messages",
            ondelete="CASCADE",
        ),
        _session_fk("runs"),
        _user_fk("runs"),
        sa.ForeignKeyConstraint(
            ["user_message_id"],
            ["messages.id"],
            name="fk_runs_user_message_id_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_runs"),
        sa.UniqueConstraint("id", name="uq_runs_id"),
    )
    op.create_index("ix_runs_session_id_seq", "runs", ["session_id", "seq"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_user_message_id", "runs", ["user_message_id"])

    op.create_table(
        "history",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("session_id", ID, nullable=False),
        sa.Column("run_id", ID, nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_history_run_id_runs", ondelete="CASCADE"
        ),
        _session_fk("history"),
        sa.PrimaryKeyConstraint("id", name="pk_history"),
    )
    op.create_index("ix_history_run_id", "history", ["run_id"])
    op.create_index("ix_history_session_id_id", "history", ["session_id", "id"])


def downgrade() -> None:
    for table in ("history", "runs", "messages", "usage", "sessions", "api_keys", "users"):
        op.drop_table(table)
