"""OpenAI chat completions (PROTOCOL.md section 5): run events encoded as `chat.completion.chunk`
objects, or folded into one `chat.completion`, and refusals as OpenAI error bodies.

`ChunkEncoder.encode` is a pure function of the run's events (plus the completion id and time
it was made with), so a replay sends exactly what a live client saw. The first chunk carries
`role`; answer text goes in `delta.content` and reasoning in `delta.reasoning_content` (the field
OpenAI-compatible servers use for it); calls of the client's tools go in `delta.tool_calls`, with
`id`, `type` and `function.name` in a call's first fragment only and `index` in every fragment.
Rillet's own tools run on the server and are not shown: their results reach the client through
the answer. `run.finished` gives the closing chunk with `finish_reason` (`tool_calls` when the run
waits for the client's tools, else `stop`), then, when the client asked for it, the usage chunk
with `choices: []`. An `error` event becomes `{"error": {...}}`, which OpenAI SDKs raise.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse

from rillet.chat.models import ModelInfo
from rillet.errors import HTTP_STATUS, ProtocolError
from rillet.events import (
    ErrorEvent,
    ReasoningDeltaEvent,
    RunEvent,
    RunFinishedEvent,
    RunStartedEvent,
    TextDeltaEvent,
    ToolStartedEvent,
)

_STATUS: dict[str, int] = {code: status for code, status in HTTP_STATUS.items()}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def model_object(info: ModelInfo) -> dict[str, Any]:
    """A catalogue entry as an OpenAI `model` object, with Rillet's fields beside OpenAI's.
    `created` is 0: the catalogue does not know when a model was made."""
    return {"object": "model", "created": 0, "owned_by": info.provider, **info.to_dict()}


def http_status(code: str) -> int:
    """The HTTP status of a wire error code (500 for a code this version does not know)."""
    return _STATUS.get(code, 500)


def error_body(code: str, message: str, param: str | None = None) -> dict[str, Any]:
    """An OpenAI error object; `code` is Rillet's wire error code."""
    status = http_status(code)
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(exc: ProtocolError, param: str | None = None) -> JSONResponse:
    """The HTTP answer to a refused request. `x-should-retry: false` tells OpenAI SDKs not to
    retry what cannot succeed on a retry (they retry 409, 429 and 5xx by default)."""
    headers = {} if exc.retryable else {"x-should-retry": "false"}
    return JSONResponse(
        error_body(exc.code, exc.message, param), status_code=exc.http_status, headers=headers
    )


def finish_reason(event: RunFinishedEvent) -> str:
    return "tool_calls" if event.reason == "tool_calls" else "stop"


def usage_of(event: RunFinishedEvent) -> dict[str, int]:
    return {
        "prompt_tokens": event.input_tokens,
        "completion_tokens": event.output_tokens,
        "total_tokens": event.input_tokens + event.output_tokens,
    }


def args_json(event: ToolStartedEvent) -> str:
    return json.dumps(event.args, separators=(",", ":"), ensure_ascii=False)


class ChunkEncoder:
    """Encodes one run's events as `chat.completion.chunk` objects."""

    def __init__(self, *, completion_id: str, created: int, include_usage: bool) -> None:
        self._id = completion_id
        self._created = created
        self._include_usage = include_usage
        self._model = ""
        self._tool_index = 0
        self._failed = False

    def encode(self, event: RunEvent) -> list[dict[str, Any]]:
        """The chunks (or error object) for `event`, in order; often none."""
        if isinstance(event, RunStartedEvent):
            self._model = event.model
            return [self._chunk({"role": "assistant", "content": ""})]
        if isinstance(event, TextDeltaEvent):
            return [self._chunk({"content": event.text})]
        if isinstance(event, ReasoningDeltaEvent):
            return [self._chunk({"reasoning_content": event.text})]
        if isinstance(event, ToolStartedEvent) and event.runs_on == "client":
            index = self._tool_index
            self._tool_index += 1
            opening = {
                "index": index,
                "id": event.tool_call_id,
                "type": "function",
                "function": {"name": event.tool_name, "arguments": ""},
            }
            arguments = {"index": index, "function": {"arguments": args_json(event)}}
            return [
                self._chunk({"tool_calls": [opening]}),
                self._chunk({"tool_calls": [arguments]}),
            ]
        if isinstance(event, ErrorEvent):
            self._failed = True
            return [error_body(event.code, event.message)]
        if isinstance(event, RunFinishedEvent) and not self._failed:
            chunks = [self._chunk({}, finish_reason(event))]
            if self._include_usage:
                chunks.append({**self._head(), "choices": [], "usage": usage_of(event)})
            return chunks
        return []

    def _head(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk = {
            **self._head(),
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            chunk["usage"] = None
        return chunk


class CompletionBuilder:
    """Folds one run's events into a `chat.completion` object, or the error that ended it."""

    def __init__(self, *, completion_id: str, created: int) -> None:
        self._id = completion_id
        self._created = created
        self._model = ""
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[dict[str, Any]] = []
        self.error: ErrorEvent | None = None
        self.finished: RunFinishedEvent | None = None

    def add(self, event: RunEvent) -> None:
        if isinstance(event, RunStartedEvent):
            self._model = event.model
        elif isinstance(event, TextDeltaEvent):
            self._text.append(event.text)
        elif isinstance(event, ReasoningDeltaEvent):
            self._reasoning.append(event.text)
        elif isinstance(event, ToolStartedEvent) and event.runs_on == "client":
            self._calls.append(
                {
                    "id": event.tool_call_id,
                    "type": "function",
                    "function": {"name": event.tool_name, "arguments": args_json(event)},
                }
            )
        elif isinstance(event, ErrorEvent):
            self.error = event
        elif isinstance(event, RunFinishedEvent):
            self.finished = event

    def completion(self) -> dict[str, Any]:
        """The `chat.completion` of a run that has finished without an error."""
        assert self.finished is not None
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self._text) or None,
            "refusal": None,
        }
        if self._reasoning:
            message["reasoning_content"] = "".join(self._reasoning)
        if self._calls:
            message["tool_calls"] = self._calls
        return {
            "id": self._id,
            "object": "chat.completion",
            "created": self._created,
            "model": self._model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish_reason(self.finished),
                }
            ],
            "usage": usage_of(self.finished),
        }
