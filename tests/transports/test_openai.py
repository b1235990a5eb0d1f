"""The OpenAI chat-completions encoders (`rillet.transports.openai`): exact chunks and completion
objects for fixed runs, and the error bodies and headers of refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rillet.errors import BusyError, NotFoundError, RateLimitedError, UnauthorizedError
from rillet.events import RunEvent, RunFinishedEvent, ToolStartedEvent
from rillet.transports.openai import ChunkEncoder, CompletionBuilder, error_response
from tests.transports import events as ev

ID = "chatcmpl-run-1"
CREATED = 1_700_000_000


def encode(events: list[RunEvent], *, include_usage: bool = True) -> list[dict[str, Any]]:
    encoder = ChunkEncoder(completion_id=ID, created=CREATED, include_usage=include_usage)
    return [chunk for event in events for chunk in encoder.encode(event)]


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "demo",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


def client_call(call: str, name: str, args: dict[str, Any]) -> ToolStartedEvent:
    return ToolStartedEvent(
        session_id=ev.SESSION,
        run_id=ev.RUN,
        seq=0,
        tool_call_id=call,
        tool_name=name,
        args=args,
        runs_on="client",
    )


def waiting_for_tools(tokens: tuple[int, int]) -> RunFinishedEvent:
    return RunFinishedEvent(
        session_id=ev.SESSION,
        run_id=ev.RUN,
        seq=0,
        status="completed",
        reason="tool_calls",
        input_tokens=tokens[0],
        output_tokens=tokens[1],
    )


def client_tool_run() -> list[RunEvent]:
    """Text, then two calls of the client's tools: the run ends waiting for their results."""
    return ev.numbered(
        ev.started(),
        ev.text("Let me check."),
        client_call("c1", "get_weather", {"city": "Paris"}),
        client_call("c2", "get_weather", {"city": "Oslo"}),
        ev.usage(12, 9),
        ev.completed(),
        waiting_for_tools((12, 9)),
    )


def test_a_run_with_server_tools_streams_text_and_reasoning_only() -> None:
    assert encode(ev.tool_run()) == [
        chunk({"role": "assistant", "content": ""}, usage=None),
        chunk({"reasoning_content": "Let me "}, usage=None),
        chunk({"reasoning_content": "look."}, usage=None),
        chunk({"content": "Checking"}, usage=None),
        chunk({"content": "It is "}, usage=None),
        chunk({"content": "12:00."}, usage=None),
        chunk({}, "stop", usage=None),
        {
            "id": ID,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": "demo",
            "choices": [],
            "usage": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37},
        },
    ]


def test_client_tool_calls_have_id_type_and_name_in_their_first_fragment_only() -> None:
    assert encode(client_tool_run(), include_usage=False) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Let me check."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":"Paris"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"city":"Oslo"}'}}]}),
        chunk({}, "tool_calls"),
    ]


def test_an_error_ends_the_chunks_with_an_error_object() -> None:
    events = ev.numbered(
        ev.started(), ev.text("Hel"), ev.error("the provider failed"), ev.completed("error")
    )
    events.append(
        RunFinishedEvent(
            session_id=ev.SESSION, run_id=ev.RUN, seq=5, status="failed", reason="provider_error"
        )
    )
    assert encode(events, include_usage=False) == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        {
            "error": {
                "message": "the provider failed",
                "type": "server_error",
                "param": None,
                "code": "provider_error",
            }
        },
    ]


def test_a_cancelled_run_stops_normally() -> None:
    events = ev.numbered(ev.started(), ev.text("Hel"), ev.completed("cancelled"))
    events.append(ev.finished("cancelled").with_seq(4))
    assert encode(events, include_usage=False)[-1] == chunk({}, "stop")


def completion(message: dict[str, Any], finish: str, usage: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": "demo",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
    }


def fold(events: list[RunEvent]) -> CompletionBuilder:
    builder = CompletionBuilder(completion_id=ID, created=CREATED)
    for event in events:
        builder.add(event)
    return builder


def test_the_completion_of_a_run_with_server_tools() -> None:
    assert fold(ev.tool_run()).completion() == completion(
        {
            "role": "assistant",
            "content": "CheckingIt is 12:00.",
            "refusal": None,
            "reasoning_content": "Let me look.",
        },
        "stop",
        (30, 7),
    )


def test_the_completion_of_a_run_waiting_for_client_tools() -> None:
    calls = [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "c2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
        },
    ]
    assert fold(client_tool_run()).completion() == completion(
        {"role": "assistant", "content": "Let me check.", "refusal": None, "tool_calls": calls},
        "tool_calls",
        (12, 9),
    )


def test_the_fold_of_a_failed_run_keeps_its_error() -> None:
    builder = fold(ev.numbered(ev.started(), ev.error("boom")))
    assert builder.error is not None and builder.error.code == "provider_error"


@pytest.mark.parametrize(
    ("error", "status", "kind", "should_retry"),
    [
        (UnauthorizedError("bad key"), 401, "authentication_error", "false"),
        (NotFoundError("no such model"), 404, "not_found_error", "false"),
        (RateLimitedError("slow down"), 429, "rate_limit_error", None),
        (BusyError("busy"), 409, "conflict_error", None),
    ],
)
def test_refusals_are_openai_error_bodies(
    error: Exception, status: int, kind: str, should_retry: str | None
) -> None:
    assert isinstance(error, UnauthorizedError | NotFoundError | RateLimitedError | BusyError)
    response = error_response(error)
    assert response.status_code == status
    assert response.headers.get("x-should-retry") == should_retry
    assert json.loads(bytes(response.body)) == {
        "error": {"message": error.message, "type": kind, "param": None, "code": error.code}
    }
