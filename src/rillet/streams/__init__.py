"""Event logs, commands and session activity, in memory (one process) or on Redis (many)."""

from __future__ import annotations

from rillet.streams.base import Command, StreamBackend

__all__ = ["Command", "StreamBackend"]
