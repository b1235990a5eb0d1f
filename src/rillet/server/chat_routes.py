"""Routes for the Vercel AI SDK: `POST /v1/chat` and its resume, `GET /v1/chat/{id}/stream`.

The chat id a client sends is the session id; a session is created, for the caller, the first
time an id is used. Refusals before the stream (auth, limits, busy, unknown model) are non-2xx
JSON from the `ProtocolError` handler; once the stream has started, a failure is an `error` chunk
(UI message stream) or an `3:` part (v4 data stream). The stream only subscribes to the run's
log, so a client that goes away never stops its run; resume replays the session's active run from
its first event and then follows it live.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse

from rillet.errors import (
    InternalError,
    NotFoundError,
    ProtocolError,
    ResumeExpiredError,
    StorageError,
)
from rillet.server.context import Rillet
from rillet.server.routes import App, User
from rillet.transports import data_stream, ui_stream
from rillet.transports.data_stream import DataStreamEncoder, encode_part
from rillet.transports.sse import DONE, data_line, with_keepalive
from rillet.transports.ui_stream import ChatRequest, UIStreamEncoder, sdk_version

router = APIRouter(tags=["ai-sdk"])

Protocol = Literal["ui", "data"]
TITLE_CHARS = 50
"""A session created by its first message is titled with this many characters of it."""

ProtocolQuery = Annotated[
    Protocol, Query(description="`ui`: AI SDK 5+ UI message stream; `data`: AI SDK 4 data stream")
]
SdkQuery = Annotated[
    str | None,
    Query(description="The client's AI SDK major version; 6 or more enables v6-only chunks"),
]
SdkHeader = Annotated[str | None, Header(description="Same as the `sdk` query parameter")]


@router.post("/v1/chat", response_class=StreamingResponse)
async def chat(
    app: App,
    user: User,
    body: ChatRequest,
    protocol: ProtocolQuery = "ui",
    sdk: SdkQuery = None,
    x_rillet_sdk: SdkHeader = None,
) -> StreamingResponse:
    """Send the chat's new user message (or regenerate its last answer) and stream the run."""
    version = sdk_version(sdk, x_rillet_sdk)
    message = body.to_message_request()
    created = False
    try:
        if not message.regenerate:
            created = await _ensure_session(app, user.id, body.id, message.query)
        submitted = await app.runs.submit(user.id, message)
    except (ProtocolError, StorageError) as exc:
        if created:
            with contextlib.suppress(ProtocolError, StorageError):
                await _drop_if_empty(app, user.id, body.id)
        if isinstance(exc, StorageError):
            raise _database_failed() from exc
        raise
    if submitted.duplicate and not await app.streams.has_log(submitted.run_id):
        raise ResumeExpiredError(
            f"this message was already answered and its stream is no longer kept; "
            f"GET /v1/sessions/{body.id}/messages has the saved answer"
        )
    return _stream(app, user.id, submitted.run_id, protocol, version)


@router.get("/v1/chat/{chat_id}/stream", response_class=StreamingResponse)
async def resume(
    app: App,
    user: User,
    chat_id: str,
    protocol: ProtocolQuery = "ui",
    sdk: SdkQuery = None,
    x_rillet_sdk: SdkHeader = None,
) -> Response:
    """The session's active run from its first event, then live; 204 when none is active."""
    version = sdk_version(sdk, x_rillet_sdk)
    try:
        await app.store.get_session(user.id, chat_id)
    except NotFoundError:
        # A chat that has not sent its first message yet has nothing to resume either.
        return Response(status_code=204)
    except StorageError as exc:
        raise _database_failed() from exc
    run_id = await app.streams.active_run(chat_id)
    if run_id is None or not await app.streams.has_log(run_id):
        return Response(status_code=204)
    return _stream(app, user.id, run_id, protocol, version)


def _database_failed() -> ProtocolError:
    """What a client reads when the database fails before the stream: JSON with a protocol
    code, like every other refusal, rather than a bare 500."""
    return InternalError("the database failed; try again")


async def _ensure_session(app: Rillet, user_id: str, session_id: str, text: str) -> bool:
    """Make sure the user's session exists; True when this call created it."""
    try:
        await app.store.get_session(user_id, session_id)
    except NotFoundError:
        await app.store.create_session(user_id, text[:TITLE_CHARS], session_id=session_id)
        return True
    return False


async def _drop_if_empty(app: Rillet, user_id: str, session_id: str) -> None:
    """Undo a session created for a message that was then refused."""
    page = await app.store.list_messages(user_id, session_id, limit=1)
    if not page.items:
        await app.store.delete_session(user_id, session_id)


def _stream(
    app: Rillet, user_id: str, run_id: str, protocol: Protocol, sdk: int
) -> StreamingResponse:
    if protocol == "data":
        chunks = with_keepalive(
            _data_parts(app, user_id, run_id), app.settings.keepalive_s, data_stream.KEEP_ALIVE
        )
        return StreamingResponse(chunks, headers=data_stream.HEADERS)
    chunks = with_keepalive(_ui_chunks(app, user_id, run_id, sdk), app.settings.keepalive_s)
    return StreamingResponse(chunks, headers=ui_stream.HEADERS)


async def _ui_chunks(app: Rillet, user_id: str, run_id: str, sdk: int) -> AsyncIterator[bytes]:
    encoder = UIStreamEncoder(sdk)
    try:
        async for event in app.runs.subscribe(user_id, run_id):
            chunks = encoder.encode(event)
            if chunks:
                yield b"".join(data_line(chunk) for chunk in chunks)
    except ProtocolError as exc:
        yield data_line({"type": "error", "errorText": exc.message})
    yield DONE


async def _data_parts(app: Rillet, user_id: str, run_id: str) -> AsyncIterator[bytes]:
    encoder = DataStreamEncoder()
    try:
        async for event in app.runs.subscribe(user_id, run_id):
            parts = encoder.encode(event)
            if parts:
                yield b"".join(encode_part(part) for part in parts)
    except ProtocolError as exc:
        yield encode_part(("3", exc.message))
