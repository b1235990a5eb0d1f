"""A scriptable fake OpenAI-compatible server that speaks the real chat-completions wire format.

Tests hand `fake_openai_server` a script of responses; each request to
`POST /v1/chat/completions` consumes the next one and gets it back as the real API would send it:
with `stream: true`, server-sent events carrying `chat.completion.chunk` objects (text split over
several `content` deltas, or a tool call whose `function.arguments` are split over several deltas
with `id`, `type` and `name` only in the first), then a usage-only chunk when
`stream_options.include_usage` is set, then `data: [DONE]`; without `stream`, one
`chat.completion` object. Every request is recorded. The server is Uvicorn on 127.0.0.1, on a port
the OS picks, in a background thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass(frozen=True)
class ScriptedText:
    """An assistant text answer, streamed as `chunks` content deltas."""

    text: str
    chunks: int = 4
    input_tokens: int = 10
    output_tokens: int = 5


@dataclass(frozen=True)
class ScriptedToolCall:
    """One tool call, its JSON `arguments` streamed as `fragments` deltas."""

    name: str
    arguments: str
    fragments: int = 3
    call_id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")
    input_tokens: int = 10
    output_tokens: int = 5


ScriptedResponse = ScriptedText | ScriptedToolCall


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class RequestRecorder:
    """The requests received so far, oldest first."""

    requests: list[RecordedRequest] = field(default_factory=list)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [request.body for request in self.requests]


@asynccontextmanager
async def fake_openai_server(
    script: Sequence[ScriptedResponse],
) -> AsyncIterator[tuple[str, RequestRecorder]]:
    """Serve `script` and yield `(base_url, recorder)`; the API lives under `<base_url>/v1`."""
    recorder = RequestRecorder()
    app = _build_app(list(script), recorder)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        loop="asyncio",
        http="h11",
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fake-openai", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake OpenAI server did not start")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", recorder
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 10)


def _build_app(script: list[ScriptedResponse], recorder: RequestRecorder) -> Starlette:
    async def chat_completions(request: Request) -> Response:
        body = await request.json()
        recorder.requests.append(
            RecordedRequest(path=request.url.path, headers=dict(request.headers), body=body)
        )
        if not script:
            error = {"message": "the fake server's script is exhausted", "type": "invalid_request"}
            return JSONResponse({"error": error}, status_code=400)
        response = script.pop(0)
        model = str(body.get("model", "fake-model"))
        if not body.get("stream"):
            return JSONResponse(_completion(response, model))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _sse(_chunks(response, model, include_usage=include_usage)),
            media_type="text/event-stream",
        )

    async def list_models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
        ]
    )


async def _sse(chunks: list[dict[str, Any]]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n"
        await asyncio.sleep(0)
    yield "data: [DONE]\n\n"


def _chunks(response: ScriptedResponse, model: str, *, include_usage: bool) -> list[dict[str, Any]]:
    completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            body["usage"] = None
        return body

    chunks: list[dict[str, Any]]
    if isinstance(response, ScriptedText):
        chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
        chunks += [chunk({"content": piece}) for piece in _split(response.text, response.chunks)]
        chunks.append(chunk({}, "stop"))
    else:
        first = {
            "index": 0,
            "id": response.call_id,
            "type": "function",
            "function": {"name": response.name, "arguments": ""},
        }
        chunks = [chunk({"role": "assistant", "content": None, "tool_calls": [first]})]
        chunks += [
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            for piece in _split(response.arguments, response.fragments)
        ]
        chunks.append(chunk({}, "tool_calls"))
    if include_usage:
        chunks.append(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": _usage(response),
            }
        )
    return chunks


def _completion(response: ScriptedResponse, model: str) -> dict[str, Any]:
    message: dict[str, Any]
    if isinstance(response, ScriptedText):
        message = {"role": "assistant", "content": response.text, "refusal": None}
        finish_reason = "stop"
    else:
        call = {
            "id": response.call_id,
            "type": "function",
            "function": {"name": response.name, "arguments": response.arguments},
        }
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish_reason = "tool_calls"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": _usage(response),
    }


def _usage(response: ScriptedResponse) -> dict[str, int]:
    return {
        "prompt_tokens": response.input_tokens,
        "completion_tokens": response.output_tokens,
        "total_tokens": response.input_tokens + response.output_tokens,
    }


def _split(text: str, pieces: int) -> list[str]:
    """`text` in `pieces` non-empty parts of near-equal length (fewer if it is shorter)."""
    pieces = max(1, min(pieces, len(text)))
    size, extra = divmod(len(text), pieces)
    parts, start = [], 0
    for index in range(pieces):
        end = start + size + (1 if index < extra else 0)
        parts.append(text[start:end])
        start = end
    return parts
