"""Parsing `POST /v1/chat/completions` bodies (`rillet.transports.openai_request`)."""

from __future__ import annotations

from typing import Any

import pytest

from rillet.errors import InvalidFrameError
from rillet.transports.conversation import ChatMessage, ToolCall
from rillet.transports.openai_request import (
    client_tools_of,
    messages_of,
    parse_mode,
    parse_request,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "demo", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_a_conversation_with_tool_calls_and_content_parts() -> None:
    request = parse_request(
        body(
            messages=[
                {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "rain"},
            ],
            temperature=0.2,
            stream=True,
            stream_options={"include_usage": True},
            metadata={"session_id": "s1", "mode": "ask"},
        )
    )
    assert request.stream and request.include_usage
    assert request.metadata_value("session_id") == "s1"
    assert messages_of(request) == [
        ChatMessage(role="system", text="Be brief."),
        ChatMessage(role="user", text="Weather?"),
        ChatMessage(
            role="assistant",
            tool_calls=(ToolCall(id="c1", name="get_weather", arguments='{"city":"Oslo"}'),),
        ),
        ChatMessage(role="tool", text="rain", tool_call_id="c1"),
    ]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"messages": []}, "messages"),
        ({"model": ""}, "model"),
        ({"n": 2}, "n"),
        ({"messages": [{"role": "function", "content": "x"}]}, "messages.0"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages.0.user.content",
        ),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools.0"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidFrameError, match=problem):
        parse_request(body(**fields))


def test_client_tools() -> None:
    [tool] = client_tools_of(parse_request(body(tools=[WEATHER_TOOL])))
    assert (tool.name, tool.description, tool.parameters_json_schema) == (
        "get_weather",
        "The weather in a city.",
        {"type": "object", "properties": {"city": {"type": "string"}}},
    )
    assert client_tools_of(parse_request(body(tools=[WEATHER_TOOL], tool_choice="none"))) == []
    with pytest.raises(InvalidFrameError, match="own name"):
        client_tools_of(parse_request(body(tools=[WEATHER_TOOL, WEATHER_TOOL])))


def test_modes() -> None:
    assert (parse_mode(None), parse_mode("ask"), parse_mode("agent")) == ("agent", "ask", "agent")
    with pytest.raises(InvalidFrameError, match="unknown mode"):
        parse_mode("god")
