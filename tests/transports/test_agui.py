"""The AG-UI encoder and input parsing (`rillet.transports.agui`): exact events for fixed runs."""

from __future__ import annotations

from typing import Any

import pytest

from rillet.errors import InvalidFrameError
from rillet.events import RunEvent, RunFinishedEvent, ToolStartedEvent
from rillet.transports.agui import AguiEncoder, client_tools_of, messages_of, parse_input
from rillet.transports.conversation import ChatMessage, ToolCall
from tests.transports import events as ev

MSG = ev.MESSAGE


def encode(events: list[RunEvent], *, outcomes: bool = True) -> list[dict[str, Any]]:
    encoder = AguiEncoder(thread_id="thread-1", run_id="client-run", outcomes=outcomes)
    return [item for event in events for item in encoder.encode(event)]


RUN_STARTED = {
    "type": "RUN_STARTED",
    "threadId": "thread-1",
    "runId": "client-run",
    "protocolVersion": "1.0",
}


def finished(outcome: dict[str, Any] | None, tokens: tuple[int, int]) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "RUN_FINISHED", "threadId": "thread-1", "runId": "client-run"}
    if outcome is not None:
        event["outcome"] = outcome
    event["usage"] = [
        {
            "model": "demo",
            "inputTokens": tokens[0],
            "outputTokens": tokens[1],
            "totalTokens": sum(tokens),
        }
    ]
    return event


def tool_call(call: str, name: str, args: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "TOOL_CALL_START",
            "toolCallId": call,
            "toolCallName": name,
            "parentMessageId": MSG,
        },
        {"type": "TOOL_CALL_ARGS", "toolCallId": call, "delta": args},
        {"type": "TOOL_CALL_END", "toolCallId": call},
    ]


def test_a_run_with_reasoning_text_and_server_tools() -> None:
    reasoning_id = f"{MSG}-reasoning-1"
    assert encode(ev.tool_run()) == [
        RUN_STARTED,
        {"type": "REASONING_START", "messageId": reasoning_id},
        {"type": "REASONING_MESSAGE_START", "messageId": reasoning_id, "role": "reasoning"},
        {"type": "REASONING_MESSAGE_CONTENT", "messageId": reasoning_id, "delta": "Let me "},
        {"type": "REASONING_MESSAGE_CONTENT", "messageId": reasoning_id, "delta": "look."},
        {"type": "REASONING_MESSAGE_END", "messageId": reasoning_id},
        {"type": "REASONING_END", "messageId": reasoning_id},
        {"type": "TEXT_MESSAGE_START", "messageId": MSG, "role": "assistant"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": MSG, "delta": "Checking"},
        {"type": "TEXT_MESSAGE_END", "messageId": MSG},
        *tool_call("c1", "current_time", '{"timezone":"UTC"}'),
        *tool_call("c2", "calculator", '{"expression":"1/0"}'),
        {
            "type": "TOOL_CALL_RESULT",
            "messageId": "c1-result",
            "toolCallId": "c1",
            "content": "12:00",
            "role": "tool",
        },
        {
            "type": "TOOL_CALL_RESULT",
            "messageId": "c2-result",
            "toolCallId": "c2",
            "content": "division by zero",
            "role": "tool",
        },
        # Text after the tools continues the same assistant message.
        {"type": "TEXT_MESSAGE_START", "messageId": MSG, "role": "assistant"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": MSG, "delta": "It is "},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": MSG, "delta": "12:00."},
        {"type": "TEXT_MESSAGE_END", "messageId": MSG},
        finished({"type": "success"}, (30, 7)),
    ]


def client_tool_run() -> list[RunEvent]:
    call = ToolStartedEvent(
        session_id=ev.SESSION,
        run_id=ev.RUN,
        seq=0,
        tool_call_id="c1",
        tool_name="get_weather",
        args={"city": "Paris"},
        runs_on="client",
    )
    end = RunFinishedEvent(
        session_id=ev.SESSION,
        run_id=ev.RUN,
        seq=0,
        status="completed",
        reason="tool_calls",
        input_tokens=5,
        output_tokens=2,
    )
    return ev.numbered(ev.started(), call, ev.usage(5, 2), ev.completed(), end)


def test_a_run_that_waits_for_a_client_tool_names_it_pending() -> None:
    assert encode(client_tool_run()) == [
        RUN_STARTED,
        # The parent message of the call, so the client can attach the call to it.
        {"type": "TEXT_MESSAGE_START", "messageId": MSG, "role": "assistant"},
        {"type": "TEXT_MESSAGE_END", "messageId": MSG},
        *tool_call("c1", "get_weather", '{"city":"Paris"}'),
        finished({"type": "success", "pendingToolCallIds": ["c1"]}, (5, 2)),
    ]


def test_clients_before_1_0_get_no_outcome() -> None:
    assert encode(client_tool_run(), outcomes=False)[-1] == finished(None, (5, 2))


def test_a_cancelled_run() -> None:
    events = ev.numbered(ev.started(), ev.text("Hel"), ev.completed("cancelled"))
    events.append(ev.finished("cancelled").with_seq(4))
    assert encode(events)[-3:] == [
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": MSG, "delta": "Hel"},
        {"type": "TEXT_MESSAGE_END", "messageId": MSG},
        finished({"type": "cancelled"}, (0, 0)),
    ]


def test_an_error_closes_the_open_message_and_ends_the_run() -> None:
    events = ev.numbered(ev.started(), ev.text("Hel"), ev.error("boom"), ev.completed("error"))
    events.append(ev.finished("failed").with_seq(5))
    assert encode(events) == [
        RUN_STARTED,
        {"type": "TEXT_MESSAGE_START", "messageId": MSG, "role": "assistant"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": MSG, "delta": "Hel"},
        {"type": "TEXT_MESSAGE_END", "messageId": MSG},
        {"type": "RUN_ERROR", "message": "boom", "code": "provider_error"},
    ]


RUN_INPUT: dict[str, Any] = {
    "threadId": "thread-1",
    "runId": "client-run",
    "protocolVersion": "1.0",
    "state": {"anything": True},
    "messages": [
        {"id": "s", "role": "system", "content": "Be brief."},
        {"id": "u1", "role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "id": "a1",
            "role": "assistant",
            "toolCalls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"id": "t1", "role": "tool", "toolCallId": "c1", "content": "rain"},
        {"id": "x", "role": "activity", "activityType": "progress", "content": {}},
    ],
    "tools": [{"name": "get_weather", "description": "Weather.", "parameters": {"type": "object"}}],
    "context": [{"description": "city", "value": "Oslo"}],
    "forwardedProps": {"model": "demo", "mode": "ask"},
}


def test_run_agent_input() -> None:
    run_input = parse_input(RUN_INPUT)
    assert run_input.declares_1_0
    assert (run_input.forwarded("model"), run_input.forwarded("mode")) == ("demo", "ask")
    assert run_input.instructions() == "Context from the application:\n- city: Oslo"
    assert messages_of(run_input) == [
        ChatMessage(role="system", text="Be brief."),
        ChatMessage(role="user", text="Weather?"),
        ChatMessage(
            role="assistant",
            tool_calls=(ToolCall(id="c1", name="get_weather", arguments='{"city":"Oslo"}'),),
        ),
        ChatMessage(role="tool", text="rain", tool_call_id="c1"),
    ]
    [tool] = client_tools_of(run_input)
    assert (tool.name, tool.parameters_json_schema) == ("get_weather", {"type": "object"})


@pytest.mark.parametrize("version", [None, "0.0.45", "1.0", "1.3", "2.0-beta"])
def test_protocol_versions(version: str | None) -> None:
    run_input = parse_input({**RUN_INPUT, "protocolVersion": version})
    assert run_input.declares_1_0 == (version not in (None, "0.0.45"))


@pytest.mark.parametrize("missing", ["threadId", "runId", "messages"])
def test_required_fields(missing: str) -> None:
    with pytest.raises(InvalidFrameError, match=missing):
        parse_input({key: value for key, value in RUN_INPUT.items() if key != missing})
