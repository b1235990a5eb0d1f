"""Conformance with the Vercel AI SDK, proven by its own code: `useChat`'s core (`AbstractChat` over
`DefaultChatTransport`) from ai 5.0.0 (strict chunk schemas), 6.0.0 (strict, v6 chunks), the newest
6.x and the newest 7.x, and v4's `callChatApi` with the data stream protocol, each against a real
Rillet server. The Node scripts print what the client ended with and what the server saved.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conformance.conftest import RunNode

pytestmark = pytest.mark.e2e

UI = "ui_chat.mjs"
DATA = "data_chat.mjs"
DEFAULT_CLIENTS = ["ai5", "ai6", "ai7"]
"""Clients in the default mode: only keys the strict 5.0.0 and 6.0.0-6.0.230 schemas accept."""
ALL_MODES = [
    pytest.param("ai5", "default", id="ai5"),
    pytest.param("ai6", "default", id="ai6"),
    pytest.param("ai7", "default", id="ai7"),
    pytest.param("ai6strict", "query", id="ai6.0.0-sdk6-query"),
    pytest.param("ai7", "header", id="ai7-sdk6-header"),
]
"""The default mode, and clients that ask for v6 chunks by `?sdk=6` or `x-rillet-sdk: 6`."""
REPLAYING_CLIENTS = ["ai6", "ai7"]
"""Clients whose `resumeStream()` restarts the message on a replay from the start (6.0.304+)."""
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def assistant(chat: dict[str, Any], index: int = -1) -> dict[str, Any]:
    answers = [m for m in chat["messages"] if m["role"] == "assistant"]
    return answers[index]


def assert_ready(chat: dict[str, Any]) -> None:
    assert chat["error"] is None
    assert chat["status"] == "ready"


@pytest.mark.parametrize(("client", "sdk"), ALL_MODES)
def test_answers_stream_whole_and_match_the_saved_messages(
    run_node: RunNode, client: str, sdk: str
) -> None:
    result = run_node(UI, client, "text", sdk)
    chat, saved = result["final"], result["saved"]
    assert_ready(chat)
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"] * 2
    assert [m["text"] for m in chat["messages"]] == [
        "words=300 rate=0",
        result["expected"][0],
        "words=7 rate=0",
        result["expected"][1],
    ]
    # The server kept the history itself and saved exactly what the client shows, by the same ids.
    assert [(m["id"], m["role"], m["text"]) for m in saved][1::2] == [
        (m["id"], m["role"], m["text"]) for m in chat["messages"]
    ][1::2]
    assert [m["text"] for m in saved][::2] == ["words=300 rate=0", "words=7 rate=0"]
    assert {m["status"] for m in saved} == {"complete"}
    assert assistant(chat)["partTypes"] == ["step-start", "text", "data-usage"]


@pytest.mark.parametrize(("client", "sdk"), ALL_MODES)
def test_a_server_tool_call_is_a_tool_part_with_its_output(
    run_node: RunNode, client: str, sdk: str
) -> None:
    result = run_node(UI, client, "tool", sdk)
    chat = result["final"]
    assert_ready(chat)
    answer = assistant(chat)
    [tool] = answer["tools"]
    assert tool["type"] == "tool-current_time"
    assert tool["state"] == "output-available"
    assert tool["input"] == {"timezone": "UTC"}
    assert ISO_TIME.match(tool["output"])
    assert tool["output"] in answer["text"]
    assert answer["text"] == result["saved"][-1]["text"]
    assert answer["partTypes"] == [
        "step-start",
        "data-usage",
        "tool-current_time",
        "step-start",
        "text",
        "data-usage",
    ]


@pytest.mark.parametrize("client", DEFAULT_CLIENTS)
def test_a_refusal_before_the_stream_is_status_error_with_the_reason(
    run_node: RunNode, client: str
) -> None:
    result = run_node(UI, client, "unknown_model")
    chat = result["final"]
    assert chat["status"] == "error"
    error = json.loads(chat["error"])["error"]
    assert error["code"] == "not_found"
    assert "no-such-model" in error["message"]
    assert result["saved"] == {"status": 404}  # no empty session left behind


@pytest.mark.parametrize("client", DEFAULT_CLIENTS)
def test_a_provider_error_mid_stream_is_status_error(run_node: RunNode, client: str) -> None:
    result = run_node(UI, client, "provider_error")
    chat = result["final"]
    assert chat["status"] == "error"
    assert "model provider failed" in chat["error"]
    assert [(m["role"], m["status"]) for m in result["saved"]] == [
        ("user", "complete"),
        ("assistant", "error"),
    ]


@pytest.mark.parametrize("client", DEFAULT_CLIENTS)
def test_regenerate_replaces_the_last_answer_on_both_sides(run_node: RunNode, client: str) -> None:
    result = run_node(UI, client, "regenerate")
    before, chat, saved = result["before"], result["final"], result["saved"]
    assert_ready(chat)
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
    assert assistant(chat)["text"] == result["expected"]
    assert assistant(chat)["id"] != assistant(before)["id"]
    assert [m["text"] for m in saved] == ["words=20 rate=0", result["expected"]]
    assert saved[1]["id"] == assistant(chat)["id"]


@pytest.mark.parametrize(("client", "sdk"), ALL_MODES)
def test_a_cancelled_run_ends_ready_with_the_saved_partial_answer(
    run_node: RunNode, client: str, sdk: str
) -> None:
    result = run_node(UI, client, "cancel", sdk)
    chat, saved = result["final"], result["saved"]
    assert result["cancelStatus"] == 202
    assert_ready(chat)
    partial = assistant(chat)["text"]
    assert partial and result["expected"].startswith(partial) and partial != result["expected"]
    assert (saved[-1]["status"], saved[-1]["text"]) == ("cancelled", partial)


@pytest.mark.parametrize("client", DEFAULT_CLIENTS)
def test_resume_with_nothing_active_is_a_no_op(run_node: RunNode, client: str) -> None:
    result = run_node(UI, client, "resume_idle")
    fresh, before, after = result["fresh"], result["before"], result["after"]
    assert fresh["messages"] == [] and fresh["error"] is None
    assert after["messages"] == before["messages"] and after["error"] is None
    if client == "ai5":
        # 5.0.0 sets `submitted` before it asks and does not reset it on 204 (fixed in 5.0.x).
        assert fresh["status"] == after["status"] == "submitted"
    else:
        assert fresh["status"] == after["status"] == "ready"


@pytest.mark.parametrize("client", REPLAYING_CLIENTS)
def test_resume_mid_run_ends_with_the_complete_answer(run_node: RunNode, client: str) -> None:
    result = run_node(UI, client, "resume_mid")
    stopped, expected = result["stopped"], result["expected"]
    partial = assistant(stopped)["text"]
    assert expected.startswith(partial) and partial != expected
    saved = result["saved"]
    for chat in (result["final"], result["other"]):
        assert_ready(chat)
        assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
        assert assistant(chat)["text"] == expected == saved[-1]["text"]
        assert assistant(chat)["id"] == saved[-1]["id"]


def test_strict_5_0_0_rejects_v6_keys_so_the_default_mode_leaves_them_out(
    run_node: RunNode,
) -> None:
    result = run_node(UI, "ai5", "text", "query")
    chat = result["final"]
    assert chat["status"] == "error"
    assert "Type validation failed" in chat["error"] and "finishReason" in chat["error"]


# --- AI SDK 4: data stream protocol -----------------------------------------------------------


def test_v4_data_stream_text_usage_and_chat_id(run_node: RunNode) -> None:
    result = run_node(DATA, "text")
    saved = result["saved"]
    for turn, words, answer in ((result["first"], 200, saved[1]), (result["second"], 5, saved[3])):
        assert turn["error"] is None
        message = turn["message"]
        assert message["content"] == " ".join(f"w{i}" for i in range(1, words + 1))
        assert message["content"] == answer["text"] and message["id"] == answer["id"]
        assert message["partTypes"] == ["step-start", "text"]
        assert turn["finishReason"] == "stop"
        assert turn["usage"]["completionTokens"] == words
        assert turn["usage"]["totalTokens"] == turn["usage"]["promptTokens"] + words
        annotations = message["annotations"]
        assert annotations[0] == {"chatId": result["chatId"]}
        assert annotations[1]["usage"]["output_tokens"] == words
    assert [m["role"] for m in saved] == ["user", "assistant"] * 2


def test_v4_tool_invocation_reaches_state_result(run_node: RunNode) -> None:
    result = run_node(DATA, "tool")
    turn = result["first"]
    assert turn["error"] is None and turn["finishReason"] == "stop"
    message = turn["message"]
    [invocation] = message["toolInvocations"]
    assert (invocation["state"], invocation["toolName"]) == ("result", "current_time")
    assert invocation["args"] == {"timezone": "UTC"}
    assert ISO_TIME.match(invocation["result"])
    assert message["partTypes"] == ["step-start", "tool-invocation", "step-start", "text"]
    assert invocation["result"] in message["content"]
    assert message["content"] == result["saved"][-1]["text"]
    usage = [a["usage"] for a in message["annotations"] if "usage" in a]
    assert len(usage) == 2  # one per model request
    assert turn["usage"]["completionTokens"] == sum(u["output_tokens"] for u in usage)


def test_v4_refusal_and_mid_stream_error_reject_the_call(run_node: RunNode) -> None:
    refused = run_node(DATA, "unknown_model")
    assert json.loads(refused["first"]["error"])["error"]["code"] == "not_found"
    assert refused["saved"] == {"status": 404}
    failed = run_node(DATA, "provider_error")
    assert "model provider failed" in failed["first"]["error"]
    assert failed["saved"][-1]["status"] == "error"
