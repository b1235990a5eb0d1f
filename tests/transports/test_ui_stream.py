"""The AI SDK UI message stream encoder and request parsing (`rillet.transports.ui_stream`):
exact chunks for fixed runs, in the strict default mode and in the `sdk=6` mode."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from rillet.errors import InvalidFrameError, NotFoundError
from rillet.events import RunEvent
from rillet.transports.sse import data_line
from rillet.transports.ui_stream import (
    ChatRequest,
    UIStreamEncoder,
    sdk_version,
)
from tests.transports import events as ev

STRICT_KEYS: dict[str, set[str]] = {
    "start": {"type", "messageId", "messageMetadata"},
    "start-step": {"type"},
    "text-start": {"type", "id", "providerMetadata"},
    "text-delta": {"type", "id", "delta", "providerMetadata"},
    "text-end": {"type", "id", "providerMetadata"},
    "reasoning-start": {"type", "id", "providerMetadata"},
    "reasoning-delta": {"type", "id", "delta", "providerMetadata"},
    "reasoning-end": {"type", "id", "providerMetadata"},
    "tool-input-available": {
        "type",
        "toolCallId",
        "toolName",
        "input",
        "providerExecuted",
        "providerMetadata",
        "dynamic",
    },
    "tool-output-available": {"type", "toolCallId", "output", "providerExecuted", "dynamic"},
    "tool-output-error": {"type", "toolCallId", "errorText", "providerExecuted", "dynamic"},
    "error": {"type", "errorText"},
    "data-usage": {"type", "id", "data", "transient"},
    "finish-step": {"type"},
    "finish": {"type", "messageMetadata"},
}
"""Chunk types and keys of ai 5.0.0's `uiMessageChunkSchema` (zod `strictObject`s) that Rillet
uses; 6.0.0-6.0.230 accept a superset of each."""


def encode(events: list[RunEvent], sdk: int = 5) -> list[dict[str, Any]]:
    encoder = UIStreamEncoder(sdk)
    return [chunk for event in events for chunk in encoder.encode(event)]


TOOL_RUN_CHUNKS: list[dict[str, Any]] = [
    {"type": "start", "messageId": "msg-1"},
    {"type": "start-step"},
    {"type": "reasoning-start", "id": "r2"},
    {"type": "reasoning-delta", "id": "r2", "delta": "Let me "},
    {"type": "reasoning-delta", "id": "r2", "delta": "look."},
    {"type": "reasoning-end", "id": "r2"},
    {"type": "text-start", "id": "t4"},
    {"type": "text-delta", "id": "t4", "delta": "Checking"},
    {"type": "data-usage", "data": {"input_tokens": 10, "output_tokens": 4, "cost_usd": 0.5}},
    {"type": "text-end", "id": "t4"},
    {
        "type": "tool-input-available",
        "toolCallId": "c1",
        "toolName": "current_time",
        "input": {"timezone": "UTC"},
    },
    {
        "type": "tool-input-available",
        "toolCallId": "c2",
        "toolName": "calculator",
        "input": {"expression": "1/0"},
    },
    {"type": "tool-output-available", "toolCallId": "c1", "output": "12:00"},
    {"type": "tool-output-error", "toolCallId": "c2", "errorText": "division by zero"},
    {"type": "finish-step"},
    {"type": "start-step"},
    {"type": "text-start", "id": "t10"},
    {"type": "text-delta", "id": "t10", "delta": "It is "},
    {"type": "text-delta", "id": "t10", "delta": "12:00."},
    {"type": "data-usage", "data": {"input_tokens": 20, "output_tokens": 3, "cost_usd": 0.5}},
    {"type": "text-end", "id": "t10"},
    {"type": "finish-step"},
    {"type": "finish"},
]


def test_a_tool_run_in_the_strict_default_mode() -> None:
    assert encode(ev.tool_run()) == TOOL_RUN_CHUNKS


def test_sdk_6_adds_the_finish_reason() -> None:
    chunks = encode(ev.tool_run(), sdk=6)
    assert chunks[:-1] == TOOL_RUN_CHUNKS[:-1]
    assert chunks[-1] == {"type": "finish", "finishReason": "stop"}


@pytest.mark.parametrize("sdk", [5, 6])
def test_a_replay_from_the_start_sends_the_same_chunks(sdk: int) -> None:
    assert encode(ev.tool_run(), sdk) == encode(ev.tool_run(), sdk)


def test_default_mode_uses_only_keys_strict_clients_accept() -> None:
    runs = [
        ev.tool_run(),
        _cancelled_run(),
        _confirmation_run(),
        _denied_run(),
        ev.numbered(
            ev.started(),
            ev.text("a"),
            ev.error("boom"),
            ev.completed("error"),
            ev.finished("failed"),
        ),
    ]
    for events in runs:
        for chunk in encode(events):
            assert chunk["type"] in STRICT_KEYS, chunk
            assert set(chunk) <= STRICT_KEYS[chunk["type"]], chunk


def _cancelled_run() -> list[RunEvent]:
    return ev.numbered(
        ev.started(), ev.text("w1 w2"), ev.completed("cancelled"), ev.finished("cancelled")
    )


def test_a_cancelled_run() -> None:
    tail = [{"type": "text-end", "id": "t2"}, {"type": "finish-step"}]
    assert encode(_cancelled_run())[-3:] == [*tail, {"type": "finish"}]
    assert encode(_cancelled_run(), sdk=6)[-4:] == [
        *tail,
        {"type": "abort"},
        {"type": "finish", "finishReason": "other"},
    ]


def test_a_failed_run_sends_the_error_chunk_after_closing_the_text() -> None:
    events = ev.numbered(
        ev.started(),
        ev.text("par"),
        ev.error("the model provider failed"),
        ev.completed("error"),
        ev.finished("failed"),
    )
    assert encode(events, sdk=6) == [
        {"type": "start", "messageId": "msg-1"},
        {"type": "start-step"},
        {"type": "text-start", "id": "t2"},
        {"type": "text-delta", "id": "t2", "delta": "par"},
        {"type": "text-end", "id": "t2"},
        {"type": "error", "errorText": "the model provider failed"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "error"},
    ]


def _confirmation_run() -> list[RunEvent]:
    return ev.numbered(
        ev.started(),
        ev.tool_started("c1", "delete_file", {"path": "a.txt"}),
        ev.confirmation("c1"),
        ev.completed(),
        ev.finished("paused"),
    )


def test_a_confirmation_is_an_approval_request_only_for_v6_clients() -> None:
    strict = encode(_confirmation_run())
    assert [c["type"] for c in strict] == [
        "start",
        "start-step",
        "tool-input-available",
        "finish-step",
        "finish",
    ]
    v6 = encode(_confirmation_run(), sdk=6)
    assert v6[3] == {"type": "tool-approval-request", "approvalId": "conf-1", "toolCallId": "c1"}
    assert v6[-1] == {"type": "finish", "finishReason": "tool-calls"}


def _denied_run() -> list[RunEvent]:
    return ev.numbered(
        ev.started(),
        ev.tool_started("c1", "delete_file", {"path": "a.txt"}),
        ev.tool_finished("c1", "denied", error="the user denied this call"),
        ev.completed(),
        ev.finished(),
    )


def test_a_denied_call_is_denied_for_v6_and_an_error_for_strict_clients() -> None:
    assert encode(_denied_run())[3] == {
        "type": "tool-output-error",
        "toolCallId": "c1",
        "errorText": "the user denied this call",
    }
    assert encode(_denied_run(), sdk=6)[3] == {"type": "tool-output-denied", "toolCallId": "c1"}


def test_chunks_are_sse_data_lines() -> None:
    chunk = {"type": "text-delta", "id": "t2", "delta": "é\n"}
    line = data_line(chunk)
    assert line.startswith(b"data: ") and line.endswith(b"\n\n")
    assert line.count(b"\n") == 2
    assert json.loads(line[len(b"data: ") :]) == chunk


# --- requests ---------------------------------------------------------------------------------


def _request(**body: Any) -> ChatRequest:
    base: dict[str, Any] = {
        "id": "chat-1",
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
        "trigger": "submit-message",
    }
    return ChatRequest.model_validate({**base, **body})


def test_a_v5_submit_takes_only_the_last_user_message() -> None:
    history = [
        {"id": "u0", "role": "user", "parts": [{"type": "text", "text": "earlier"}]},
        {"id": "a0", "role": "assistant", "parts": [{"type": "text", "text": "answer"}]},
        {
            "id": "u1",
            "role": "user",
            "parts": [{"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"}],
        },
    ]
    message = _request(messages=history, model="bench", mode="ask").to_message_request()
    assert (message.query, message.session_id, message.model, message.mode) == (
        "line 1\nline 2",
        "chat-1",
        "bench",
        "ask",
    )
    assert message.client_id == "ui:chat-1:u1"
    assert not message.regenerate


def test_a_v4_message_with_content_only() -> None:
    body = {"id": "chat-1", "messages": [{"id": "u1", "role": "user", "content": "from v4"}]}
    assert ChatRequest.model_validate(body).to_message_request().query == "from v4"


def test_a_regeneration() -> None:
    message = _request(trigger="regenerate-message", messageId="a0").to_message_request()
    assert message.regenerate and message.message_id == "a0" and message.session_id == "chat-1"


@pytest.mark.parametrize(
    ("body", "refusal"),
    [
        ({"messageId": "u1"}, InvalidFrameError),
        ({"messages": [{"role": "assistant", "parts": []}]}, InvalidFrameError),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "parts": [{"type": "file", "url": "data:,x", "mediaType": "text/plain"}],
                    }
                ]
            },
            InvalidFrameError,
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "parts": [{"type": "tool-delete", "state": "approval-responded"}],
                    }
                ]
            },
            NotFoundError,
        ),
    ],
    ids=["edit", "assistant-last", "file", "approval"],
)
def test_refused_requests(body: dict[str, Any], refusal: type[Exception]) -> None:
    with pytest.raises(refusal):
        _request(**body).to_message_request()


@pytest.mark.parametrize("chat_id", ["", ".", "..", "a/b", "x" * 65, "a b"])
def test_chat_ids_must_be_plain(chat_id: str) -> None:
    with pytest.raises(ValidationError):
        _request(id=chat_id)


def test_sdk_version() -> None:
    assert sdk_version(None, None) == 5
    assert sdk_version("6", None) == 6
    assert sdk_version(None, "v7") == 7
    assert sdk_version("5", "6") == 5
    with pytest.raises(InvalidFrameError):
        sdk_version("six", None)
