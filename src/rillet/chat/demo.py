"""Rillet's two offline models: `demo`, which explains itself, and `bench`, which drives benchmarks.

Both are pydantic-ai `FunctionModel`s with a streaming and a non-streaming function, so they work
with every agent entry point and need no network. `demo` answers with a short canned markdown text
and shows the tool loop: asked for the time it calls `current_time`, asked to "calculate <expr>" it
calls `calculator`, then it reports the result. `bench` reads `words=N rate=R` from the last user
message and streams `w1 w2 ... wN` at R words per second (R=0: as fast as possible).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel

DEMO_CHUNK_DELAY_S = 0.015
"""Pause between the `demo` model's chunks, so its answer visibly streams."""
BENCH_MAX_WORDS = 10_000_000
"""Most words one `bench` answer may have."""

_TIME_WORD = re.compile(r"\btime\b", re.IGNORECASE)
_CALCULATE = re.compile(
    r"\b(?:calculate|compute)\s*:?\s+(?P<expression>.+)", re.IGNORECASE | re.DOTALL
)
_WORD_CHUNK = re.compile(r"\s*\S+")
_QUOTE_CHARS = 80
_BENCH_USAGE = (
    "This is Rillet's `bench` model. Send `words=N rate=R` (for example `words=100 rate=50`) "
    "and it streams the words `w1` to `wN` at R words per second; `rate=0` streams as fast as "
    "possible."
)


def builtin_models() -> dict[str, FunctionModel]:
    """The offline models, by catalogue id (`demo`, `bench`)."""
    return {
        "demo": FunctionModel(_demo_response, stream_function=_demo_stream, model_name="demo"),
        "bench": FunctionModel(_bench_response, stream_function=_bench_stream, model_name="bench"),
    }


# --- demo -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ToolCallPlan:
    tool_name: str
    args: dict[str, str]


def _demo_plan(messages: Sequence[ModelMessage], info: AgentInfo) -> str | _ToolCallPlan:
    """What `demo` says next: a text, or a call to one of the tools it was offered."""
    last = messages[-1] if messages else None
    if isinstance(last, ModelRequest):
        returns = [part for part in last.parts if isinstance(part, ToolReturnPart)]
        if returns:
            return _report_tool_results(returns)
    question = last_user_text(messages)
    offered = {tool.name for tool in info.function_tools}
    calculation = _CALCULATE.search(question)
    if calculation and "calculator" in offered:
        expression = calculation["expression"].strip().rstrip("?!.").strip()
        return _ToolCallPlan("calculator", {"expression": expression})
    if _TIME_WORD.search(question) and "current_time" in offered:
        return _ToolCallPlan("current_time", {"timezone": "UTC"})
    return _canned_answer(question)


def _report_tool_results(returns: Sequence[ToolReturnPart]) -> str:
    sentences = []
    for part in returns:
        result = part.content if isinstance(part.content, str) else part.model_response_str()
        if part.outcome != "success":
            sentences.append(f"The `{part.tool_name}` tool could not answer: {result}")
        elif part.tool_name == "current_time":
            sentences.append(f"The current time is **{result}** (from the `current_time` tool).")
        elif part.tool_name == "calculator":
            sentences.append(f"The result is **{result}** (from the `calculator` tool).")
        else:
            sentences.append(f"The `{part.tool_name}` tool returned: {result}")
    return " ".join(sentences)


def _canned_answer(question: str) -> str:
    quote = " ".join(question.split())
    if len(quote) > _QUOTE_CHARS:
        quote = quote[: _QUOTE_CHARS - 1].rstrip() + "…"
    opening = f'You asked: "{quote}"\n\n' if quote else ""
    return (
        f"{opening}"
        "I am Rillet's offline **demo** model, so I cannot really answer that, but I can show "
        "you how answers stream: every word you see arrived as its own chunk.\n\n"
        "To talk to a real model, configure one of these and restart Rillet:\n\n"
        "- `OPENAI_API_KEY` for OpenAI\n"
        "- `ANTHROPIC_API_KEY` for Anthropic\n"
        "- `GEMINI_API_KEY` for Google Gemini\n"
        "- `RILLET_OPENAI_BASE_URL` for a local server such as Ollama, vLLM or llama.cpp\n\n"
        "Pick the default with `RILLET_DEFAULT_MODEL`. Meanwhile, ask me for the time or to "
        "*calculate 2 + 2* to see a tool call."
    )


async def _demo_stream(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | DeltaToolCalls]:
    plan = _demo_plan(messages, info)
    if isinstance(plan, _ToolCallPlan):
        yield {0: DeltaToolCall(name=plan.tool_name, tool_call_id=_tool_call_id())}
        yield {0: DeltaToolCall(json_args=json.dumps(plan.args))}
        return
    for chunk in _WORD_CHUNK.findall(plan):
        yield chunk
        await asyncio.sleep(DEMO_CHUNK_DELAY_S)


async def _demo_response(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    plan = _demo_plan(messages, info)
    if isinstance(plan, _ToolCallPlan):
        call = ToolCallPart(plan.tool_name, dict(plan.args), tool_call_id=_tool_call_id())
        return ModelResponse(parts=[call])
    return ModelResponse(parts=[TextPart(plan)])


def _tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


# --- bench ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchRequest:
    """What a `bench` message asks for: `words` words at `rate` words per second (0 = no pause)."""

    words: int
    rate: float


def parse_bench_request(text: str) -> BenchRequest | None:
    """Read `words=N rate=R` (`rate` optional, default 0); `None` when malformed."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep or key not in ("words", "rate") or key in fields:
            return None
        fields[key] = value
    try:
        words = int(fields["words"])
        rate = float(fields.get("rate", "0"))
    except (KeyError, ValueError):
        return None
    if not 1 <= words <= BENCH_MAX_WORDS or not 0 <= rate < float("inf"):
        return None
    return BenchRequest(words=words, rate=rate)


async def _bench_stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str]:
    request = parse_bench_request(last_user_text(messages))
    if request is None:
        yield _BENCH_USAGE
        return
    words, rate = request.words, request.rate
    if rate == 0:
        yield "w1"
        for index in range(2, words + 1):
            yield f" w{index}"
        return
    # Word i is due at start + (i - 1) / rate on a monotonic clock, so lateness never accumulates.
    interval = 1.0 / rate
    start = time.monotonic()
    yield "w1"
    for index in range(2, words + 1):
        delay = start + (index - 1) * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield f" w{index}"


async def _bench_response(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    request = parse_bench_request(last_user_text(messages))
    if request is None:
        return ModelResponse(parts=[TextPart(_BENCH_USAGE)])
    if request.rate > 0:
        await asyncio.sleep((request.words - 1) / request.rate)
    text = " ".join(f"w{index}" for index in range(1, request.words + 1))
    return ModelResponse(parts=[TextPart(text)])


# --- shared -----------------------------------------------------------------------------------


def last_user_text(messages: Sequence[ModelMessage]) -> str:
    """The text of the last user prompt in `messages` (non-text content is skipped)."""
    for message in reversed(messages):
        if not isinstance(message, ModelRequest):
            continue
        for part in reversed(message.parts):
            if isinstance(part, UserPromptPart):
                if isinstance(part.content, str):
                    return part.content
                return " ".join(item for item in part.content if isinstance(item, str))
    return ""
