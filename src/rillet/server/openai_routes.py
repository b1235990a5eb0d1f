"""`POST /v1/chat/completions`, the OpenAI-compatible entry point (PROTOCOL.md section 5).

A request names its session with header `x-rillet-session` or `metadata.session_id` (an unknown
one is `not_found`), or with `user` when that names one of the caller's sessions (otherwise `user`
is only OpenAI's end-user tag). With a session the server keeps the history: only the new input
is taken from `messages`, and system messages apply to this run. Without one the request is
stateless: `messages` is the whole history, and the run is still saved, in a new session, so it is
billed and can be inspected (its id comes back in header `x-rillet-session`). Every refusal is an
OpenAI error body with the status of its wire code; auth, rate limits, modes and the busy policy
are the chat core's, exactly as on WebSocket.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from rillet.chat.agent import tool_return_request
from rillet.chat.jobs import MessageRequest, Submitted
from rillet.errors import InvalidFrameError, NotFoundError, ProtocolError
from rillet.server.auth import bearer_token
from rillet.server.context import Rillet
from rillet.server.routes import rillet_of
from rillet.storage.base import UserRecord
from rillet.transports.conversation import split_turn, to_model_messages
from rillet.transports.openai import (
    ChunkEncoder,
    CompletionBuilder,
    error_body,
    error_response,
    http_status,
)
from rillet.transports.openai_request import (
    ChatCompletionRequest,
    client_tools_of,
    messages_of,
    parse_mode,
    parse_request,
)
from rillet.transports.sse import DONE, data_line, with_keepalive

router = APIRouter(tags=["openai"])

OptionalHeader = Annotated[str | None, Header()]


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    request: Request,
    authorization: OptionalHeader = None,
    x_rillet_session: OptionalHeader = None,
    x_rillet_mode: OptionalHeader = None,
) -> Response:
    """OpenAI chat completions, streamed (`stream: true`) or as one object."""
    rillet = rillet_of(request)
    try:
        user = await rillet.auth.authenticate(bearer_token(authorization))
        body = parse_request(await _json(request))
        message = await _message_request(rillet, user, body, x_rillet_session, x_rillet_mode)
        submitted = await rillet.runs.submit(user.id, message)
    except ProtocolError as exc:
        return error_response(exc)
    completion_id = f"chatcmpl-{submitted.run_id}"
    created = int(time.time())
    headers = {"x-rillet-session": submitted.session.id, "x-rillet-run": submitted.run_id}
    if body.stream:
        encoder = ChunkEncoder(
            completion_id=completion_id, created=created, include_usage=body.include_usage
        )
        return StreamingResponse(
            with_keepalive(_chunks(rillet, user, submitted, encoder), rillet.settings.keepalive_s),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    builder = CompletionBuilder(completion_id=completion_id, created=created)
    try:
        async for event in rillet.runs.subscribe(user.id, submitted.run_id, 0):
            builder.add(event)
    except ProtocolError as exc:
        return error_response(exc)
    if builder.error is not None:
        error = builder.error
        if not error.retryable:
            headers["x-should-retry"] = "false"
        return JSONResponse(
            error_body(error.code, error.message),
            status_code=http_status(error.code),
            headers=headers,
        )
    return JSONResponse(builder.completion(), headers=headers)


async def _chunks(
    rillet: Rillet, user: UserRecord, submitted: Submitted, encoder: ChunkEncoder
) -> AsyncIterator[bytes]:
    try:
        async for event in rillet.runs.subscribe(user.id, submitted.run_id, 0):
            for chunk in encoder.encode(event):
                yield data_line(chunk)
    except ProtocolError as exc:
        yield data_line(error_body(exc.code, exc.message))
    yield DONE


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise InvalidFrameError(f"the request body is not valid JSON: {exc}") from exc


async def _message_request(
    rillet: Rillet,
    user: UserRecord,
    body: ChatCompletionRequest,
    session_header: str | None,
    mode_header: str | None,
) -> MessageRequest:
    turn = split_turn(messages_of(body))
    session_id = session_header or body.metadata_value("session_id")
    if session_id is None and body.user:
        with contextlib.suppress(NotFoundError):
            session_id = (await rillet.store.get_session(user.id, body.user)).id
    common: dict[str, Any] = {
        "query": turn.query,
        "mode": parse_mode(mode_header or body.metadata_value("mode")),
        "model": body.model,
        "client_tools": client_tools_of(body),
        "tool_results": turn.tool_results,
    }
    if session_id is not None:
        instructions = "\n\n".join(turn.instructions) or None
        return MessageRequest(session_id=session_id, instructions=instructions, **common)
    history = to_model_messages(turn.before)
    tool_return_request(history, turn.tool_results)  # refuses results that answer no call
    return MessageRequest(history=history, **common)
