"""WebSocket protocol v1 at `/v1/ws` (PROTOCOL.md section 2).

One `WebSocketConnection` per socket. Its reader loop parses frames and dispatches them to
`handle_<type>`; every refusal is an `error` frame and the connection stays open. Runs are
watched by forwarding tasks, one per run, that encode run events as frames; a session watch adds
a forwarding task for every run that starts in the session. A dropped socket cancels only its
own tasks, never a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
import uuid
from collections import Counter
from typing import Any, assert_never

from starlette.websockets import WebSocket, WebSocketDisconnect

from rillet.chat.jobs import MessageRequest
from rillet.errors import (
    InternalError,
    InvalidFrameError,
    NotFoundError,
    ProtocolError,
    ResumeExpiredError,
    StorageError,
    UnauthorizedError,
)
from rillet.events import RunFinishedEvent, UsageEvent
from rillet.server.auth import bearer_token
from rillet.server.context import Rillet
from rillet.storage.base import UserRecord
from rillet.transports.ws_frames import (
    PROTOCOL_VERSION,
    ClientFrame,
    ConfirmationResponseFrame,
    ControlFrame,
    EventEncoder,
    InitFrame,
    MessageFrame,
    PingFrame,
    SubscribeFrame,
    UnsubscribeFrame,
    error_frame,
    frame,
    parse_frame,
)

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_IDLE = 4408
CLOSE_TOO_MANY = 4429
CLOSE_GOING_AWAY = 1001


class ConnectionState(enum.Enum):
    AWAITING_INIT = "awaiting_init"
    READY = "ready"
    CLOSED = "closed"


_TRANSITIONS = {
    ConnectionState.AWAITING_INIT: {ConnectionState.READY, ConnectionState.CLOSED},
    ConnectionState.READY: {ConnectionState.CLOSED},
    ConnectionState.CLOSED: set(),
}


class WebSocketConnection:
    """One client socket speaking protocol v1."""

    def __init__(self, websocket: WebSocket, rillet: Rillet) -> None:
        self.ws = websocket
        self.rillet = rillet
        self.id = uuid.uuid4().hex
        self.state = ConnectionState.AWAITING_INIT
        self.user: UserRecord | None = None
        self._send_lock = asyncio.Lock()
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._run_sessions: dict[str, str] = {}
        self._sessions: dict[str, asyncio.Task[None]] = {}
        self._helpers: set[asyncio.Task[None]] = set()
        self._last_activity = time.monotonic()
        self._counted_user: str | None = None

    def _move(self, state: ConnectionState) -> None:
        if state not in _TRANSITIONS[self.state]:
            raise RuntimeError(f"connection cannot go from {self.state.value} to {state.value}")
        self.state = state

    # --- lifecycle ----------------------------------------------------------------------------

    async def serve(self) -> None:
        settings = self.rillet.settings
        origin = self.ws.headers.get("origin")
        await self.ws.accept(subprotocol=self._chosen_subprotocol())
        if settings.allowed_origins and origin and origin not in settings.allowed_origins:
            await self._close(CLOSE_FORBIDDEN_ORIGIN, "origin not allowed")
            return
        token = bearer_token(self.ws.headers.get("authorization")) or self._subprotocol_token()
        if token or not self.rillet.auth.requires_token:
            try:
                await self._authenticate(token, announce=False)
            except UnauthorizedError as exc:
                await self._close(CLOSE_UNAUTHORIZED, exc.message)
                return
        ip = self.ws.client.host if self.ws.client else "?"
        if self.rillet.connections_by_ip[ip] >= settings.max_connections_per_ip:
            await self._close(CLOSE_TOO_MANY, "too many connections from this address")
            return
        if not self.rillet.runs.accepting:
            await self._close(CLOSE_GOING_AWAY, "server going away; reconnect")
            return
        self.rillet.connections += 1
        self.rillet.connections_by_ip[ip] += 1
        self.rillet.sockets.add(self)
        watchdog = asyncio.create_task(self._watchdog())
        try:
            if self.user is not None and not self._count_user():
                await self._close(CLOSE_TOO_MANY, "too many connections for this user")
                return
            await self._read_loop()
        finally:
            self.rillet.connections -= 1
            self.rillet.sockets.discard(self)
            _decrement(self.rillet.connections_by_ip, ip)
            if self._counted_user is not None:
                _decrement(self.rillet.connections_by_user, self._counted_user)
            watchdog.cancel()
            await self._stop_tasks()
            if self.state is not ConnectionState.CLOSED:
                self._move(ConnectionState.CLOSED)

    async def _read_loop(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            self._last_activity = time.monotonic()
            text = message.get("text")
            if text is None:
                raw = message.get("bytes") or b""
                try:
                    text = raw.decode()
                except UnicodeDecodeError:
                    await self.send(error_frame(InvalidFrameError("frames must be UTF-8 JSON")))
                    continue
            try:
                await self.dispatch(parse_frame(text))
            except ProtocolError as exc:
                await self.send(error_frame(exc, ref=_frame_ref(text)))
            except WebSocketDisconnect:
                return
            except Exception:
                # A bug or a failing database must not take a healthy connection down.
                logger.exception("handling a frame failed")
                await self.send(error_frame(InternalError("internal error"), ref=_frame_ref(text)))
            if self.state is ConnectionState.CLOSED:
                return

    async def _watchdog(self) -> None:
        """Closes connections that never authenticate, and idle ones."""
        settings = self.rillet.settings
        started = time.monotonic()
        while self.state is not ConnectionState.CLOSED:
            await asyncio.sleep(min(1.0, settings.init_timeout_s / 4))
            now = time.monotonic()
            if self.user is None and now - started > settings.init_timeout_s:
                await self._close(CLOSE_UNAUTHORIZED, "not authenticated in time")
                return
            if now - self._last_activity > settings.idle_timeout_s and not self._busy():
                await self._close(CLOSE_IDLE, "idle timeout")
                return

    def _busy(self) -> bool:
        return any(not task.done() for task in self._runs.values())

    async def going_away(self) -> None:
        """The server drains: the client should reconnect (to another node)."""
        await self._close(CLOSE_GOING_AWAY, "server going away; reconnect")

    async def _close(self, code: int, reason: str) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        self._move(ConnectionState.CLOSED)
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    async def _stop_tasks(self) -> None:
        tasks = [*self._runs.values(), *self._sessions.values(), *self._helpers]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def send(self, text: str) -> None:
        async with self._send_lock:
            await self.ws.send_text(text)

    # --- dispatch -----------------------------------------------------------------------------

    async def dispatch(self, incoming: ClientFrame) -> None:
        if isinstance(incoming, InitFrame):
            await self.handle_init(incoming)
            return
        if isinstance(incoming, PingFrame):
            await self.handle_ping(incoming)
            return
        if self.user is None:
            raise UnauthorizedError("send an init frame with your token first")
        if isinstance(incoming, MessageFrame):
            await self.handle_message(incoming)
        elif isinstance(incoming, ControlFrame):
            await self.handle_control(incoming)
        elif isinstance(incoming, ConfirmationResponseFrame):
            await self.handle_confirmation_response(incoming)
        elif isinstance(incoming, SubscribeFrame):
            await self.handle_subscribe(incoming)
        elif isinstance(incoming, UnsubscribeFrame):
            await self.handle_unsubscribe(incoming)
        else:
            assert_never(incoming)

    async def handle_init(self, incoming: InitFrame) -> None:
        try:
            await self._authenticate(incoming.token, announce=True)
        except UnauthorizedError as exc:
            await self.send(error_frame(exc))
            await self._close(CLOSE_UNAUTHORIZED, exc.message)

    async def _authenticate(self, token: str | None, *, announce: bool) -> None:
        user = await self.rillet.auth.authenticate(token)
        if self.user is not None and user.id != self.user.id:
            raise UnauthorizedError("this connection is already authenticated as another user")
        self.user = user
        if self.state is ConnectionState.AWAITING_INIT:
            self._move(ConnectionState.READY)
        if announce and self._counted_user is None and not self._count_user():
            await self._close(CLOSE_TOO_MANY, "too many connections for this user")
            return
        if announce:
            settings = self.rillet.settings
            await self.send(
                frame(
                    "ready",
                    {
                        "user_id": user.id,
                        "connection_id": self.id,
                        "protocol": PROTOCOL_VERSION,
                        "limits": {
                            "max_message_chars": settings.max_message_chars,
                            "max_frame_bytes": settings.max_frame_bytes,
                            "messages_per_minute": settings.messages_per_minute,
                        },
                    },
                )
            )

    def _count_user(self) -> bool:
        """Count this connection against its user's limit; False when it is over."""
        assert self.user is not None
        counts = self.rillet.connections_by_user
        if counts[self.user.id] >= self.rillet.settings.max_connections_per_user:
            return False
        counts[self.user.id] += 1
        self._counted_user = self.user.id
        return True

    async def handle_ping(self, incoming: PingFrame) -> None:
        await self.send(frame("pong", {"t": incoming.t}))

    async def handle_message(self, incoming: MessageFrame) -> None:
        assert self.user is not None
        if incoming.attachments:
            raise InvalidFrameError("attachments are not supported yet; send text only")
        request = MessageRequest(
            query=incoming.query,
            client_id=incoming.id,
            session_id=incoming.session_id,
            mode=incoming.mode,
            model=self._pick_model(incoming),
        )
        submitted = await self.rillet.runs.submit(self.user.id, request)
        session = submitted.session
        if submitted.session_created:
            await self.send(
                frame(
                    "session",
                    {
                        "session_id": session.id,
                        "title": session.title,
                        "created": session.created_at.isoformat(),
                        "ref": incoming.id,
                    },
                    session_id=session.id,
                )
            )
        self._watch_session(session.id)
        if not submitted.queued:
            self._forward(submitted.run_id, 0, owned=True)

    def _pick_model(self, incoming: MessageFrame) -> str | None:
        if incoming.model or not incoming.provider_preference:
            return incoming.model
        for candidate in incoming.provider_preference:
            with contextlib.suppress(NotFoundError):
                return self.rillet.runs.resolve(candidate).info.id
        raise NotFoundError(
            f"none of the preferred models is available: {', '.join(incoming.provider_preference)}"
        )

    async def handle_control(self, incoming: ControlFrame) -> None:
        assert self.user is not None
        run_id = await self.rillet.runs.cancel(self.user.id, incoming.session_id, incoming.run_id)
        if run_id not in self._runs or self._runs[run_id].done():
            # Not watching that run: acknowledge once it has really stopped.
            self._helper(self._acknowledge_cancel(incoming.session_id, run_id))

    async def _acknowledge_cancel(self, session_id: str, run_id: str) -> None:
        assert self.user is not None
        try:
            async for event in self.rillet.runs.subscribe(self.user.id, run_id, 0):
                if isinstance(event, RunFinishedEvent):
                    kind, data = EventEncoder().encode(event)
                    await self.send(frame(kind, data, session_id=session_id, run_id=run_id))
        except ProtocolError as exc:
            await self.send(error_frame(exc, session_id=session_id))

    async def handle_confirmation_response(self, incoming: ConfirmationResponseFrame) -> None:
        raise NotFoundError(f"confirmation {incoming.confirmation_id} does not exist")

    async def handle_subscribe(self, incoming: SubscribeFrame) -> None:
        assert self.user is not None
        await self.rillet.store.get_session(self.user.id, incoming.session_id)
        if incoming.run_id is not None:
            run = await self.rillet.store.get_run(self.user.id, incoming.run_id)
            if run.session_id != incoming.session_id:
                raise NotFoundError(f"run {incoming.run_id} is not in this session")
            if not await self.rillet.streams.has_log(run.id):
                raise ResumeExpiredError(
                    f"the events of run {run.id} are no longer kept; "
                    f"GET /v1/sessions/{run.session_id}/messages has the saved answer"
                )
            self._forward(run.id, incoming.after or 0, restart=True)
        self._watch_session(incoming.session_id, skip=incoming.run_id)

    async def handle_unsubscribe(self, incoming: UnsubscribeFrame) -> None:
        task = self._sessions.pop(incoming.session_id, None)
        if task is not None:
            task.cancel()
        for run_id, session_id in list(self._run_sessions.items()):
            if session_id == incoming.session_id:
                self._runs.pop(run_id).cancel()
                del self._run_sessions[run_id]

    # --- forwarding ---------------------------------------------------------------------------

    def _watch_session(self, session_id: str, skip: str | None = None) -> None:
        if session_id in self._sessions and not self._sessions[session_id].done():
            return
        self._sessions[session_id] = asyncio.create_task(self._session_watch(session_id, skip))

    async def _session_watch(self, session_id: str, skip: str | None) -> None:
        async for run_id in self.rillet.streams.session_runs(session_id):
            if run_id != skip and run_id not in self._runs:
                self._forward(run_id, 0)

    def _forward(
        self, run_id: str, after: int, *, restart: bool = False, owned: bool = False
    ) -> None:
        """Forward the run's events after `after`; `owned`: this connection's user just
        submitted it, so its ownership needs no check."""
        current = self._runs.get(run_id)
        if current is not None and not current.done():
            if not restart:
                return
            current.cancel()
        task = asyncio.create_task(self._forward_run(run_id, after, owned))
        self._runs[run_id] = task

    async def _forward_run(self, run_id: str, after: int, owned: bool) -> None:
        assert self.user is not None
        encoder = EventEncoder()
        session_id: str | None = None
        user_total: float | None = None
        try:
            async for event in self.rillet.runs.subscribe(
                self.user.id, run_id, after, owner_known=owned
            ):
                if session_id is None:
                    session_id = self._run_sessions[run_id] = event.session_id
                kind, data = encoder.encode(event)
                if isinstance(event, UsageEvent):
                    user_total = event.user_cost_usd
                await self.send(
                    frame(kind, data, session_id=session_id, run_id=run_id, seq=event.seq)
                )
                if isinstance(event, RunFinishedEvent):
                    if user_total is None:
                        user_total = await self._user_cost()
                    usage = {
                        "input_tokens": event.input_tokens,
                        "output_tokens": event.output_tokens,
                        "cost_usd": event.cost_usd,
                        "total_cost_usd": user_total,
                    }
                    await self.send(
                        frame("usage_info", usage, session_id=session_id, run_id=run_id)
                    )
        except ProtocolError as exc:
            await self._send_quietly(error_frame(exc, session_id=session_id))
        except (WebSocketDisconnect, RuntimeError):
            return
        except Exception:
            # Never leave the client waiting in silence: it learns the stream broke and can
            # subscribe again after its last seq.
            logger.exception("forwarding run %s failed", run_id)
            error = InternalError("the run's stream failed; subscribe again after your last seq")
            await self._send_quietly(error_frame(error, session_id=session_id))

    async def _user_cost(self) -> float | None:
        assert self.user is not None
        try:
            return await self.rillet.store.user_cost(self.user.id)
        except StorageError:
            logger.warning("reading the cost total of user %s failed", self.user.id)
            return None

    async def _send_quietly(self, text: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.send(text)

    def _helper(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    # --- subprotocol auth -----------------------------------------------------------------------

    def _offered_subprotocols(self) -> list[str]:
        header = self.ws.headers.get("sec-websocket-protocol", "")
        return [item.strip() for item in header.split(",") if item.strip()]

    def _chosen_subprotocol(self) -> str | None:
        offered = self._offered_subprotocols()
        return "rillet.v1" if "rillet.v1" in offered else None

    def _subprotocol_token(self) -> str | None:
        for item in self._offered_subprotocols():
            if item.startswith("bearer."):
                return item.removeprefix("bearer.")
        return None


def _decrement(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


def _frame_ref(text: str) -> str | None:
    """The client's `id` of a refused frame, when it can be read, so the client can match it."""
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    ref = raw.get("id") if isinstance(raw, dict) else None
    return ref if isinstance(ref, str) else None


async def websocket_endpoint(websocket: WebSocket) -> None:
    rillet: Rillet = websocket.app.state.rillet
    await WebSocketConnection(websocket, rillet).serve()
