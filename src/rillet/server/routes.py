"""REST routes of PROTOCOL.md section 6: sessions, messages, runs, run events, models, health.

Every route is scoped by the caller's user; another user's object answers `not_found`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from rillet.chat.models import catalogue
from rillet.errors import ProtocolError, ResumeExpiredError
from rillet.server.auth import bearer_token
from rillet.server.context import Rillet
from rillet.storage.base import MessageRecord, RunRecord, SessionRecord, UserRecord
from rillet.transports.openai import model_object
from rillet.transports.sse import encode_error, encode_event, with_keepalive

router = APIRouter()


def rillet_of(request: Request) -> Rillet:
    rillet: Rillet = request.app.state.rillet
    return rillet


async def current_user(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> UserRecord:
    return await rillet_of(request).auth.authenticate(bearer_token(authorization))


User = Annotated[UserRecord, Depends(current_user)]
App = Annotated[Rillet, Depends(rillet_of)]


class SessionCreate(BaseModel):
    title: str = Field(default="", max_length=200)


class SessionPatch(BaseModel):
    title: str = Field(min_length=1, max_length=200)


def session_json(session: SessionRecord) -> dict[str, Any]:
    return {
        "id": session.id,
        "title": session.title,
        "created_at": session.created_at.isoformat(),
        "updated_at": session.updated_at.isoformat(),
    }


def message_json(message: MessageRecord) -> dict[str, Any]:
    return {
        "id": message.id,
        "session_id": message.session_id,
        "role": message.role,
        "parts": message.parts,
        "status": message.status,
        "run_id": message.run_id,
        "client_id": message.client_id,
        "created_at": message.created_at.isoformat(),
    }


def run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "session_id": run.session_id,
        "message_id": run.message_id,
        "user_message_id": run.user_message_id,
        "status": run.status,
        "model": run.model,
        "mode": run.mode,
        "reason": run.reason,
        "error": run.error,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost_usd": run.cost_usd,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


@router.get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["operations"])
async def readyz(app: App) -> JSONResponse:
    checks = {"database": await app.store.ping(), "streams": await app.streams.ping()}
    ready = all(checks.values()) and app.runs.accepting
    return JSONResponse({"ready": ready, **checks}, status_code=200 if ready else 503)


@router.get("/v1/models", tags=["models"])
async def list_models(app: App, user: User) -> dict[str, Any]:
    """The model catalogue, shaped as OpenAI's model list (Rillet's fields added to each)."""
    return {"object": "list", "data": [model_object(info) for info in catalogue(app.settings)]}


@router.get("/v1/sessions", tags=["sessions"])
async def list_sessions(
    app: App,
    user: User,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    sessions = await app.store.list_sessions(user.id, limit=limit, offset=offset)
    return {"data": [session_json(s) for s in sessions]}


@router.post("/v1/sessions", status_code=201, tags=["sessions"])
async def create_session(app: App, user: User, body: SessionCreate) -> dict[str, Any]:
    return session_json(await app.store.create_session(user.id, body.title))


@router.get("/v1/sessions/{session_id}", tags=["sessions"])
async def get_session(app: App, user: User, session_id: str) -> dict[str, Any]:
    session = await app.store.get_session(user.id, session_id)
    active = await app.streams.active_run(session_id)
    return {**session_json(session), "active_run_id": active}


@router.patch("/v1/sessions/{session_id}", tags=["sessions"])
async def rename_session(
    app: App, user: User, session_id: str, body: SessionPatch
) -> dict[str, Any]:
    return session_json(await app.store.rename_session(user.id, session_id, body.title))


@router.delete("/v1/sessions/{session_id}", status_code=204, tags=["sessions"])
async def delete_session(app: App, user: User, session_id: str) -> Response:
    await app.store.get_session(user.id, session_id)
    active = await app.streams.active_run(session_id)
    if active is not None:
        await app.runs.cancel_run(active)
    await app.store.delete_session(user.id, session_id)
    return Response(status_code=204)


@router.get("/v1/sessions/{session_id}/messages", tags=["sessions"])
async def list_messages(
    app: App,
    user: User,
    session_id: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: str | None = None,
) -> dict[str, Any]:
    page = await app.store.list_messages(user.id, session_id, limit=limit, before=before)
    return {"data": [message_json(m) for m in page.items], "next_cursor": page.next_cursor}


@router.post("/v1/sessions/{session_id}/cancel", status_code=202, tags=["runs"])
async def cancel_session(app: App, user: User, session_id: str) -> dict[str, Any]:
    run_id = await app.runs.cancel(user.id, session_id)
    return {"run_id": run_id, "status": "cancelling"}


@router.get("/v1/runs/{run_id}", tags=["runs"])
async def get_run(app: App, user: User, run_id: str) -> dict[str, Any]:
    return run_json(await app.store.get_run(user.id, run_id))


@router.get("/v1/runs/{run_id}/events", tags=["runs"])
async def run_events(
    app: App,
    user: User,
    run_id: str,
    after: Annotated[int | None, Query(ge=0)] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events of the run, after seq `after` (or `Last-Event-ID`)."""
    await app.store.get_run(user.id, run_id)
    start = after if after is not None else _seq_of(last_event_id)
    if not await app.streams.has_log(run_id):
        raise ResumeExpiredError(f"the events of run {run_id} are no longer kept")

    async def chunks() -> Any:
        try:
            async for event in app.runs.subscribe(user.id, run_id, start):
                yield encode_event(event)
        except ProtocolError as exc:
            yield encode_error(exc)

    return StreamingResponse(
        with_keepalive(chunks(), app.settings.keepalive_s),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


def _seq_of(last_event_id: str | None) -> int:
    if not last_event_id:
        return 0
    tail = last_event_id.rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0
