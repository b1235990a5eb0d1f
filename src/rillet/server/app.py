"""The ASGI application: wiring of store, streams, runs and transports, and error mapping.

`create_app(settings)` builds a FastAPI app whose lifespan starts the store (applying
migrations) and the stream backend, recovers runs a previous process left `running`, and on
shutdown drains: no new messages, runs get until the drain deadline to finish.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rillet import __version__
from rillet.chat.runs import RunService
from rillet.errors import InvalidFrameError, ProtocolError
from rillet.server import chat_routes
from rillet.server.auth import Authenticator
from rillet.server.context import Rillet
from rillet.server.routes import router
from rillet.settings import Settings
from rillet.storage.sql import SqlStore
from rillet.streams.base import StreamBackend
from rillet.streams.memory import MemoryBackend
from rillet.transports.websocket import websocket_endpoint

logger = logging.getLogger(__name__)

DRAIN_DEADLINE_S = 30.0


def make_streams(settings: Settings) -> StreamBackend:
    return MemoryBackend()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = SqlStore(settings.database_url)
        streams = make_streams(settings)
        await store.start()
        await streams.start()
        runs = RunService(settings, store, streams)
        app.state.rillet = Rillet(
            settings=settings,
            store=store,
            streams=streams,
            runs=runs,
            auth=Authenticator(settings, store),
        )
        recovered = await runs.recover()
        if recovered:
            logger.warning("marked %d runs of a previous process as interrupted", recovered)
        try:
            yield
        finally:
            await runs.drain(DRAIN_DEADLINE_S)
            await streams.close()
            await store.close()

    app = FastAPI(
        title="Rillet",
        version=__version__,
        summary="Streaming chat server for LLM agents",
        lifespan=lifespan,
    )
    app.include_router(router)
    app.include_router(chat_routes.router)
    app.add_api_websocket_route("/v1/ws", websocket_endpoint)

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, exc: ProtocolError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        return error_response(InvalidFrameError(f"invalid request: {problems}"))

    return app


def error_response(exc: ProtocolError) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message, "retryable": exc.retryable}},
        status_code=exc.http_status,
    )
