"""The parts one Rillet process is made of, created at start and shared by every transport."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from rillet.chat.runs import RunService
from rillet.server.auth import Authenticator
from rillet.settings import Settings
from rillet.storage.base import Store
from rillet.streams.base import StreamBackend


class GoingAway(Protocol):
    """A client connection the server can send elsewhere when it drains."""

    async def going_away(self) -> None: ...


@dataclass
class Rillet:
    settings: Settings
    store: Store
    streams: StreamBackend
    runs: RunService
    auth: Authenticator
    connections: int = 0
    connections_by_user: Counter[str] = field(default_factory=Counter)
    connections_by_ip: Counter[str] = field(default_factory=Counter)
    sockets: set[GoingAway] = field(default_factory=set)
    """Open WebSocket connections, closed with 1001 when the server drains."""
