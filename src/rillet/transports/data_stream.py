"""The Vercel AI SDK v4 data stream (`POST /v1/chat?protocol=data`), PROTOCOL.md section 4.

One part per line, `CODE:JSON`: `f` start step, `0` text, `g` reasoning, `9` tool call, `a` tool
result, `8` message annotations (the chat id first, then each model request's usage), `2` data
(a tool confirmation, which v4 has no part for), `3` error, `e` finish step and `d` finish
message, with hyphenated finish reasons. Like the UI message stream, `DataStreamEncoder` is a pure
function of one run's events; a model step that follows tool results is framed by `e` and `f`.
v4's parser skips empty lines and fails on anything else it cannot read, so the keep-alive is a
bare newline.
"""

from __future__ import annotations

import json
from typing import Any

from rillet.events import (
    ErrorEvent,
    ReasoningDeltaEvent,
    RunEvent,
    RunFinishedEvent,
    RunStartedEvent,
    TextDeltaEvent,
    ToolConfirmationEvent,
    ToolFinishedEvent,
    ToolStartedEvent,
    UsageEvent,
)
from rillet.transports.ui_stream import FINISH_REASONS

HEADERS = {
    "content-type": "text/plain; charset=utf-8",
    "cache-control": "no-cache",
    "x-vercel-ai-data-stream": "v1",
    "x-accel-buffering": "no",
}
KEEP_ALIVE = b"\n"

Part = tuple[str, Any]


def encode_part(part: Part) -> bytes:
    code, value = part
    return f"{code}:{json.dumps(value, separators=(',', ':'), ensure_ascii=False)}\n".encode()


class DataStreamEncoder:
    """Encodes one run's events as v4 data stream parts `(code, value)`."""

    def __init__(self) -> None:
        self._message_id = ""
        self._step_tokens = (0, 0)
        self._tools_done = False

    def encode(self, event: RunEvent) -> list[Part]:
        """The parts for `event`, in order (possibly none)."""
        if isinstance(event, TextDeltaEvent):
            return [*self._next_step(), ("0", event.text)]
        if isinstance(event, ReasoningDeltaEvent):
            return [*self._next_step(), ("g", event.text)]
        if isinstance(event, RunStartedEvent):
            self._message_id = event.message_id
            return [("f", {"messageId": event.message_id}), ("8", [{"chatId": event.session_id}])]
        if isinstance(event, ToolStartedEvent):
            call = {
                "toolCallId": event.tool_call_id,
                "toolName": event.tool_name,
                "args": event.args,
            }
            return [*self._next_step(), ("9", call)]
        if isinstance(event, ToolConfirmationEvent):
            return [("2", [{"type": "tool-confirmation", **event.payload()}])]
        if isinstance(event, ToolFinishedEvent):
            self._tools_done = True
            if event.status == "completed":
                result: Any = event.result
            else:
                result = {"status": event.status, "error": event.error}
            return [("a", {"toolCallId": event.tool_call_id, "result": result})]
        if isinstance(event, UsageEvent):
            tokens_in, tokens_out = self._step_tokens
            self._step_tokens = (tokens_in + event.input_tokens, tokens_out + event.output_tokens)
            return [("8", [{"usage": event.usage_data()}])]
        if isinstance(event, ErrorEvent):
            return [("3", event.message)]
        if isinstance(event, RunFinishedEvent):
            reason = FINISH_REASONS[event.status]
            total = {"promptTokens": event.input_tokens, "completionTokens": event.output_tokens}
            return [self._finish_step(reason), ("d", {"finishReason": reason, "usage": total})]
        return []  # message.completed: the client built the same message from the parts

    def _next_step(self) -> list[Part]:
        """`e` and `f` around a step boundary, when tool results ended the previous step."""
        if not self._tools_done:
            return []
        self._tools_done = False
        return [self._finish_step("tool-calls"), ("f", {"messageId": self._message_id})]

    def _finish_step(self, reason: str) -> Part:
        tokens_in, tokens_out = self._step_tokens
        self._step_tokens = (0, 0)
        usage = {"promptTokens": tokens_in, "completionTokens": tokens_out}
        return ("e", {"finishReason": reason, "usage": usage, "isContinued": False})
