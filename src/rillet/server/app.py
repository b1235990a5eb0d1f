"""The ASGI application: wiring of store, streams, runs and transports, and error mapping.

`create_app(settings)` builds a FastAPI app whose lifespan starts the store (applying
migrations) and the stream backend (Redis when `redis_url` is set, else in memory), recovers runs
a previous process left `running`, keeps run leases when several processes share the streams
(`chat/recovery.py`), and on shutdown drains: no new messages, runs get until
`drain_timeout_s` to finish (`server/serve.py` drains before Uvicorn closes connections).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rillet import __version__
from rillet.chat.limits import make_limiter
from rillet.chat.recovery import LeaseKeeper
from rillet.chat.runs import RunService
from rillet.errors import InvalidFrameError, ProtocolError
from rillet.server import agui_routes, chat_routes, openai_routes
from rillet.server.auth import Authenticator
from rillet.server.context import Rillet
from rillet.server.routes import router
from rillet.settings import Settings
from rillet.storage.sql import SqlStore
from rillet.streams.base import StreamBackend
from rillet.streams.memory import MemoryBackend
from rillet.streams.redis import RedisBackend
from rillet.transports.websocket import websocket_endpoint

logger = logging.getLogger(__name__)


def make_streams(settings: Settings) -> StreamBackend:
    if settings.redis_url:
        return RedisBackend(settings.redis_url, settings.redis_prefix)
    return MemoryBackend()


def tune_gc() -> None:
    """Leave the objects made at start out of garbage collection, and collect less often.

    A run allocates many short-lived objects per token (pydantic-ai's stream events); with
    hundreds of runs at once, the default thresholds rescan the same long-lived objects again
    and again. Measured: about 30% less CPU per run with 200 concurrent runs.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = SqlStore(settings.database_url)
        streams = make_streams(settings)
        await store.start()
        await streams.start()
        limiter = make_limiter(settings)
        runs = RunService(settings, store, streams, limiter)
        keeper = LeaseKeeper(runs) if streams.shared else None
        app.state.rillet = Rillet(
            settings=settings,
            store=store,
            streams=streams,
            runs=runs,
            auth=Authenticator(settings, store),
        )
        # With shared streams, a young run without a log may be another node's, just starting.
        tune_gc()
        recovered = await runs.recover(min_age_s=2 * settings.lease_ttl_s + 10 if keeper else 0)
        if recovered:
            logger.warning("marked %d runs of a previous process as interrupted", recovered)
        if keeper is not None:
            keeper.start()
        try:
            yield
        finally:
            await runs.drain(settings.drain_timeout_s)
            if keeper is not None:
                await keeper.close()
            await limiter.close()
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
    app.include_router(openai_routes.router)
    app.include_router(agui_routes.router)
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
