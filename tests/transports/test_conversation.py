"""Client-held conversations in the chat core's terms (`rillet.transports.conversation`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)

from rillet.chat.agent import tool_return_request
from rillet.errors import InvalidFrameError
from rillet.transports.conversation import (
    ChatMessage,
    ToolCall,
    Turn,
    split_turn,
    to_model_messages,
)


def shape(messages: Sequence[ModelMessage]) -> Any:
    """The messages as JSON without their creation times."""
    return _untimed(ModelMessagesTypeAdapter.dump_python(list(messages), mode="json"))


def _untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k != "timestamp"}
    if isinstance(value, list):
        return [_untimed(item) for item in value]
    return value


WEATHER = ToolCall(id="c1", name="get_weather", arguments='{"city":"Paris"}')
CONVERSATION = [
    ChatMessage(role="system", text="Be brief."),
    ChatMessage(role="user", text="Weather in Paris?"),
    ChatMessage(role="assistant", text="Let me check.", tool_calls=(WEATHER,)),
    ChatMessage(role="tool", text="sunny", tool_call_id="c1"),
    ChatMessage(role="assistant", text="It is sunny."),
    ChatMessage(role="user", text="And tomorrow?"),
]


def test_the_last_user_message_is_the_new_input() -> None:
    assert split_turn(CONVERSATION) == Turn(
        before=CONVERSATION[:-1], query="And tomorrow?", instructions=["Be brief."]
    )


def test_trailing_tool_results_are_the_new_input() -> None:
    turn = split_turn(CONVERSATION[:4])
    assert turn == Turn(
        before=CONVERSATION[:3], query="", tool_results={"c1": "sunny"}, instructions=["Be brief."]
    )


def test_tool_results_right_before_the_last_user_message_come_with_it() -> None:
    messages = [*CONVERSATION[:4], ChatMessage(role="user", text="Thanks")]
    turn = split_turn(messages)
    assert (turn.before, turn.query, turn.tool_results) == (
        CONVERSATION[:3],
        "Thanks",
        {"c1": "sunny"},
    )


@pytest.mark.parametrize("last", ["assistant", "system"])
def test_a_conversation_must_end_with_new_input(last: str) -> None:
    with pytest.raises(InvalidFrameError, match="last message"):
        split_turn([*CONVERSATION, ChatMessage(role=last, text="x")])  # type: ignore[arg-type]
    with pytest.raises(InvalidFrameError, match="empty"):
        split_turn([])


def test_the_history_a_model_would_have_written() -> None:
    assert shape(to_model_messages(CONVERSATION[:-1])) == shape(
        [
            ModelRequest(
                parts=[SystemPromptPart("Be brief."), UserPromptPart("Weather in Paris?")]
            ),
            ModelResponse(
                parts=[
                    TextPart("Let me check."),
                    ToolCallPart("get_weather", '{"city":"Paris"}', tool_call_id="c1"),
                ]
            ),
            ModelRequest(
                parts=[ToolReturnPart(tool_name="get_weather", content="sunny", tool_call_id="c1")]
            ),
            ModelResponse(parts=[TextPart("It is sunny.")]),
        ]
    )


def test_a_tool_result_must_answer_a_call() -> None:
    orphan = [
        ChatMessage(role="user", text="hi"),
        ChatMessage(role="tool", text="x", tool_call_id="c9"),
    ]
    with pytest.raises(InvalidFrameError, match="c9"):
        to_model_messages(orphan)


def test_client_results_become_the_request_that_answers_the_last_response() -> None:
    history = to_model_messages(CONVERSATION[:3])
    request = tool_return_request(history, {"c1": "sunny"})
    assert request is not None
    expected = ToolReturnPart(tool_name="get_weather", content="sunny", tool_call_id="c1")
    assert shape([request]) == shape([ModelRequest(parts=[expected])])
    # Answered already: nothing new; unknown call: refused.
    assert tool_return_request(to_model_messages(CONVERSATION[:4]), {"c1": "sunny"}) is None
    with pytest.raises(InvalidFrameError, match="c2"):
        tool_return_request(history, {"c2": "rain"})
