"""The AI SDK v4 data stream encoder (`rillet.transports.data_stream`): exact parts for fixed
runs, and the line format v4's parser reads."""

from __future__ import annotations

import json
from typing import Any

from rillet.events import FinalRunStatus, RunEvent
from rillet.transports.data_stream import DataStreamEncoder, encode_part
from tests.transports import events as ev


def encode(events: list[RunEvent]) -> list[tuple[str, Any]]:
    encoder = DataStreamEncoder()
    return [part for event in events for part in encoder.encode(event)]


def test_a_tool_run() -> None:
    assert encode(ev.tool_run()) == [
        ("f", {"messageId": "msg-1"}),
        ("8", [{"chatId": "chat-1"}]),
        ("g", "Let me "),
        ("g", "look."),
        ("0", "Checking"),
        ("8", [{"usage": {"input_tokens": 10, "output_tokens": 4, "cost_usd": 0.5}}]),
        ("9", {"toolCallId": "c1", "toolName": "current_time", "args": {"timezone": "UTC"}}),
        ("9", {"toolCallId": "c2", "toolName": "calculator", "args": {"expression": "1/0"}}),
        ("a", {"toolCallId": "c1", "result": "12:00"}),
        ("a", {"toolCallId": "c2", "result": {"status": "failed", "error": "division by zero"}}),
        (
            "e",
            {
                "finishReason": "tool-calls",
                "usage": {"promptTokens": 10, "completionTokens": 4},
                "isContinued": False,
            },
        ),
        ("f", {"messageId": "msg-1"}),
        ("0", "It is "),
        ("0", "12:00."),
        ("8", [{"usage": {"input_tokens": 20, "output_tokens": 3, "cost_usd": 0.5}}]),
        (
            "e",
            {
                "finishReason": "stop",
                "usage": {"promptTokens": 20, "completionTokens": 3},
                "isContinued": False,
            },
        ),
        ("d", {"finishReason": "stop", "usage": {"promptTokens": 30, "completionTokens": 7}}),
    ]


def test_a_failed_run_sends_the_error_then_finishes_with_reason_error() -> None:
    events = ev.numbered(
        ev.started(),
        ev.text("par"),
        ev.error("the model provider failed"),
        ev.completed("error"),
        ev.finished("failed"),
    )
    assert encode(events)[2:] == [
        ("0", "par"),
        ("3", "the model provider failed"),
        (
            "e",
            {
                "finishReason": "error",
                "usage": {"promptTokens": 0, "completionTokens": 0},
                "isContinued": False,
            },
        ),
        ("d", {"finishReason": "error", "usage": {"promptTokens": 0, "completionTokens": 0}}),
    ]


def test_finish_reasons_are_hyphenated() -> None:
    statuses: tuple[FinalRunStatus, ...] = (
        "completed",
        "paused",
        "cancelled",
        "failed",
        "interrupted",
    )
    reasons = {}
    for status in statuses:
        parts = encode(ev.numbered(ev.started(), ev.completed(), ev.finished(status)))
        reasons[status] = parts[-1][1]["finishReason"]
    assert reasons == {
        "completed": "stop",
        "paused": "tool-calls",
        "cancelled": "other",
        "failed": "error",
        "interrupted": "error",
    }


def test_a_confirmation_is_a_data_part() -> None:
    events = ev.numbered(
        ev.started(), ev.tool_started("c1", "delete_file", {"path": "a.txt"}), ev.confirmation("c1")
    )
    [(code, [data])] = encode(events)[3:]
    assert code == "2"
    assert data["type"] == "tool-confirmation"
    assert (data["confirmation_id"], data["tool_call_id"]) == ("conf-1", "c1")


def test_parts_are_code_colon_json_lines() -> None:
    line = encode_part(("0", 'say "hi"\n'))
    assert line == b'0:"say \\"hi\\"\\n"\n'
    code, _, value = line.decode().rstrip("\n").partition(":")
    assert (code, json.loads(value)) == ("0", 'say "hi"\n')
