"""`POST /v1/agui`, the AG-UI entry point: a `RunAgentInput` in, AG-UI events out as SSE.

`threadId` is the session: a thread Rillet has not seen becomes a session with that id, and as
its history is empty, the messages the client sends are taken as the whole history. Once the
session has runs, the server keeps the history and only the new input (the last user message, or
the results of the client's tool calls) is taken from `messages`. `runId` names the run on the
wire; Rillet's own run id comes back in header `x-rillet-run`. `forwardedProps.model` and
`forwardedProps.mode` (or header `x-rillet-mode`) choose the model and mode; `context` is given to
the model as instructions; `state` is not used. A refusal before the stream is an HTTP error
with Rillet's error body; a failure during it is `RUN_ERROR`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from rillet.chat.agent import tool_return_request
from rillet.chat.jobs import MessageRequest
from rillet.errors import InvalidFrameError, ProtocolError
from rillet.server.auth import bearer_token
from rillet.server.context import Rillet
from rillet.server.routes import rillet_of
from rillet.storage.base import UserRecord
from rillet.transports.agui import (
    AguiEncoder,
    RunAgentInput,
    client_tools_of,
    messages_of,
    parse_input,
)
from rillet.transports.conversation import split_turn, to_model_messages
from rillet.transports.openai_request import parse_mode
from rillet.transports.sse import data_line, with_keepalive

router = APIRouter(tags=["ag-ui"])

TITLE_CHARS = 50


@router.post("/v1/agui", response_model=None)
async def agui_run(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_rillet_mode: Annotated[str | None, Header()] = None,
) -> Response:
    """Run the agent for an AG-UI client and stream the run as AG-UI events."""
    rillet = rillet_of(request)
    try:
        user = await rillet.auth.authenticate(bearer_token(authorization))
        try:
            raw = await request.json()
        except ValueError as exc:
            raise InvalidFrameError(f"the request body is not valid JSON: {exc}") from exc
        run_input = parse_input(raw)
        message = await _message_request(rillet, user, run_input, x_rillet_mode)
        submitted = await rillet.runs.submit(user.id, message)
    except ProtocolError as exc:
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message, "retryable": exc.retryable}},
            status_code=exc.http_status,
        )
    encoder = AguiEncoder(
        thread_id=run_input.thread_id,
        run_id=run_input.run_id,
        outcomes=run_input.declares_1_0,
    )

    async def events() -> AsyncIterator[bytes]:
        try:
            async for event in rillet.runs.subscribe(user.id, submitted.run_id, 0):
                for item in encoder.encode(event):
                    yield data_line(item)
        except ProtocolError as exc:
            yield data_line({"type": "RUN_ERROR", "message": exc.message, "code": exc.code})

    return StreamingResponse(
        with_keepalive(events(), rillet.settings.keepalive_s),
        media_type="text/event-stream",
        headers={
            "cache-control": "no-cache",
            "x-accel-buffering": "no",
            "x-rillet-session": submitted.session.id,
            "x-rillet-run": submitted.run_id,
        },
    )


async def _message_request(
    rillet: Rillet, user: UserRecord, run_input: RunAgentInput, mode_header: str | None
) -> MessageRequest:
    messages = messages_of(run_input)
    turn = split_turn(messages)
    session = await rillet.store.create_session(
        user.id, turn.query[:TITLE_CHARS], session_id=run_input.thread_id
    )
    instructions = run_input.instructions()
    history = None
    if await rillet.store.latest_run(user.id, session.id) is None:
        # A thread new to Rillet: what the client holds is the whole history.
        history = to_model_messages(turn.before)
        tool_return_request(history, turn.tool_results)  # refuses results that answer no call
    else:
        instructions = "\n\n".join([*turn.instructions, *([instructions] if instructions else [])])
    return MessageRequest(
        query=turn.query,
        client_id=run_input.messages[-1].id,
        session_id=session.id,
        mode=parse_mode(mode_header or run_input.forwarded("mode")),
        model=run_input.forwarded("model"),
        history=history,
        client_tools=client_tools_of(run_input),
        tool_results=turn.tool_results,
        instructions=instructions or None,
    )
