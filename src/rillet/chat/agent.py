"""The model and tool loop on pydantic-ai, translated into run events.

`AgentRunner.run` drives `Agent.run_stream_events()` for one turn and reports what happens to an
`RunEmitter` (text, reasoning, tool calls, usage). It never touches a connection or the database:
it returns an `AgentOutcome` with the new model messages for the caller to store. A cancel is
honoured at once while the model streams; a tool call that already started may finish first
(bounded by the tool timeout), as DESIGN.md "Runs" asks. Tools a client declares (OpenAI and
AG-UI `tools`) are pydantic-ai external tools: a call to one ends the run with the call pending,
and the client's result comes back with its next message as `tool_results`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic_ai import Agent, AgentRunResultEvent, DeferredToolRequests
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.exceptions import (
    ModelAPIError,
    RunCancelled,
    UnexpectedModelBehavior,
    UsageLimitExceeded,
)
from pydantic_ai.messages import (
    AgentStreamEvent,
    FunctionToolCallEvent,
    FunctionToolResultEvent,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
    repair_messages,
)
from pydantic_ai.output import OutputSpec
from pydantic_ai.tools import RunContext, ToolDefinition
from pydantic_ai.toolsets import ExternalToolset
from pydantic_ai.usage import RequestUsage, UsageLimits

from rillet.chat.emitter import RunEmitter
from rillet.chat.models import ResolvedModel
from rillet.chat.tools import ToolSpec
from rillet.errors import InternalError, InvalidFrameError, ProtocolError, ProviderError
from rillet.events import ToolFinishedEvent, ToolStartedEvent, ToolStatus

logger = logging.getLogger(__name__)

CANCEL_NOTE = (
    "[The user cancelled the previous answer while it was being written; it ends where it was "
    "cut off.]"
)

TOOL_STATUS: dict[str, ToolStatus] = {
    "success": "completed",
    "failed": "failed",
    "denied": "denied",
    "interrupted": "cancelled",
    "retried": "failed",
}

UsageCallback = Callable[[RequestUsage, float | None], Awaitable[None]]

_OUTPUT: OutputSpec[str | DeferredToolRequests] = [str, DeferredToolRequests]
"""A run ends with the answer text, or with the client tool calls it waits for."""


@dataclass
class AgentOutcome:
    status: Literal["completed", "cancelled", "failed"]
    new_messages: list[ModelMessage]
    error: ProtocolError | None = None
    pending_calls: list[ToolCallPart] = field(default_factory=list)
    """Calls of client tools the run ended on; the client answers them in its next message."""


@dataclass
class _UsageReporter(AbstractCapability[Any]):
    """Reports the usage of every model request as soon as its response is complete."""

    on_usage: UsageCallback
    started: float | None = field(default=None)

    async def before_model_request(self, ctx: RunContext[Any], request_context: Any) -> Any:
        self.started = time.monotonic()
        return request_context

    async def after_model_request(
        self, ctx: RunContext[Any], *, request_context: Any, response: ModelResponse
    ) -> ModelResponse:
        await self.on_usage(response.usage, self._latency_ms())
        return response

    def _latency_ms(self) -> float | None:
        if self.started is None:
            return None
        return (time.monotonic() - self.started) * 1000.0


class AgentRunner:
    """Runs one turn of the model/tool loop."""

    def __init__(
        self, *, tools: list[ToolSpec], system_prompt: str, max_requests: int, tool_timeout_s: float
    ) -> None:
        self._tools = tools
        self._system_prompt = system_prompt
        self._max_requests = max_requests
        self._tool_timeout = tool_timeout_s

    @property
    def tool_names(self) -> frozenset[str]:
        """Names of the tools the server runs itself."""
        return frozenset(spec.name for spec in self._tools)

    async def run(
        self,
        *,
        prompt: str | None,
        history: list[ModelMessage],
        model: ResolvedModel,
        emitter: RunEmitter,
        cancel: asyncio.Event,
        on_usage: UsageCallback,
        client_tools: Sequence[ToolDefinition] = (),
        tool_results: Mapping[str, Any] | None = None,
        instructions: str | None = None,
    ) -> AgentOutcome:
        """One turn. `client_tools` are offered to the model but run by the client;
        `tool_results` answer the client tool calls `history` ends with (by call id)."""
        agent: Agent[None, str] = Agent(
            model.model,
            instructions=self._system_prompt,
            tools=[spec.tool for spec in self._tools],
            capabilities=[_UsageReporter(on_usage)],
        )
        returns = tool_return_request(history, tool_results or {})
        if returns is not None:
            history = [*history, returns]
        elif prompt and history:
            # A new prompt after unanswered tool calls: they are closed as not answered.
            history = repair_messages(history)
        turn = _Turn(emitter, cancel, self._tool_timeout, {tool.name for tool in client_tools})
        try:
            async with agent.run_stream_events(
                prompt or None,
                output_type=_OUTPUT,
                message_history=history or None,
                usage_limits=UsageLimits(request_limit=self._max_requests),
                instructions=instructions,
                toolsets=[ExternalToolset(list(client_tools))] if client_tools else None,
            ) as events:
                watcher = asyncio.create_task(turn.watch_cancel(events.cancel))
                try:
                    async for event in events:
                        if isinstance(event, AgentRunResultEvent):
                            output = event.result.output
                            return AgentOutcome(
                                "completed",
                                _with_returns(returns, event.result.new_messages()),
                                pending_calls=(
                                    output.calls if isinstance(output, DeferredToolRequests) else []
                                ),
                            )
                        await turn.handle(event)
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
        except RunCancelled as exc:
            messages = _with_returns(returns, exc.new_messages())
            await _bill_interrupted(messages, on_usage)
            messages.append(ModelRequest(parts=[UserPromptPart(content=CANCEL_NOTE)]))
            return AgentOutcome("cancelled", messages)
        except ModelAPIError as exc:
            return AgentOutcome("failed", [], ProviderError(f"the model provider failed: {exc}"))
        except UsageLimitExceeded as exc:
            return AgentOutcome("failed", [], InternalError(f"the run stopped: {exc}"))
        except UnexpectedModelBehavior as exc:
            return AgentOutcome("failed", [], ProviderError(f"unexpected model behaviour: {exc}"))
        raise InternalError("the agent ended without a result")


def tool_return_request(
    history: Sequence[ModelMessage], results: Mapping[str, Any]
) -> ModelRequest | None:
    """The model request carrying a client's `results` (by tool call id) for the tool calls of
    the last model response in `history`; results for calls already answered are dropped.

    Raises:
        InvalidFrameError: a result names a call the last response did not make.
    """
    if not results:
        return None
    position = next(
        (i for i in range(len(history) - 1, -1, -1) if isinstance(history[i], ModelResponse)), -1
    )
    calls = {
        part.tool_call_id: part.tool_name
        for part in (history[position].parts if position >= 0 else [])
        if isinstance(part, ToolCallPart)
    }
    unknown = [call_id for call_id in results if call_id not in calls]
    if unknown:
        raise InvalidFrameError(
            f"tool results for unknown tool calls: {', '.join(unknown)}; a result must answer a "
            "tool call of the last assistant message"
        )
    answered = {
        part.tool_call_id
        for message in history[position + 1 :]
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, ToolReturnPart)
    }
    parts = [
        ToolReturnPart(tool_name=calls[call_id], content=content, tool_call_id=call_id)
        for call_id, content in results.items()
        if call_id not in answered
    ]
    return ModelRequest(parts=list(parts)) if parts else None


def _with_returns(
    returns: ModelRequest | None, messages: Sequence[ModelMessage]
) -> list[ModelMessage]:
    """pydantic-ai leaves a history's trailing request out of the new messages; the client's
    tool results are new in this run, so they are stored with it."""
    if returns is None or returns in messages:
        return list(messages)
    return [returns, *messages]


async def _bill_interrupted(messages: list[ModelMessage], on_usage: UsageCallback) -> None:
    """A response cut off by a cancel skips the usage hook: bill what it reports."""
    for message in reversed(messages):
        if isinstance(message, ModelResponse):
            if message.state == "interrupted":
                await on_usage(message.usage, None)
            return


class _Turn:
    """Translation of one turn's agent events into run events, and its cancel handling."""

    def __init__(
        self,
        emitter: RunEmitter,
        cancel: asyncio.Event,
        tool_timeout: float,
        client_tools: set[str],
    ) -> None:
        self._emitter = emitter
        self._cancel = cancel
        self._tool_timeout = tool_timeout
        self._client_tools = client_tools
        self._tools_running: set[str] = set()
        self._tools_idle = asyncio.Event()
        self._tools_idle.set()

    async def watch_cancel(self, cancel_run: Callable[[], None]) -> None:
        await self._cancel.wait()
        # A tool that already started may finish (bounded), so its effect is known.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._tools_idle.wait(), self._tool_timeout)
        cancel_run()

    async def handle(self, event: AgentStreamEvent) -> None:
        emitter = self._emitter
        if isinstance(event, PartDeltaEvent):
            delta = event.delta
            if self._cancel.is_set():
                return
            if isinstance(delta, TextPartDelta):
                await emitter.delta("text", delta.content_delta)
            elif isinstance(delta, ThinkingPartDelta) and delta.content_delta:
                await emitter.delta("reasoning", delta.content_delta)
        elif isinstance(event, PartStartEvent):
            part = event.part
            if self._cancel.is_set():
                return
            if isinstance(part, TextPart):
                await emitter.delta("text", part.content)
            elif isinstance(part, ThinkingPart):
                await emitter.delta("reasoning", part.content)
        elif isinstance(event, FunctionToolCallEvent):
            call = event.part
            on_client = call.tool_name in self._client_tools
            if not on_client:
                self._tools_running.add(call.tool_call_id)
                self._tools_idle.clear()
            await emitter.emit(
                ToolStartedEvent(
                    session_id=emitter.session_id,
                    run_id=emitter.run_id,
                    seq=0,
                    tool_call_id=call.tool_call_id,
                    tool_name=call.tool_name,
                    args=call.args_as_dict(),
                    runs_on="client" if on_client else "server",
                )
            )
        elif isinstance(event, FunctionToolResultEvent):
            await self._tool_finished(event.part)

    async def _tool_finished(self, part: ToolReturnPart) -> None:
        self._tools_running.discard(part.tool_call_id)
        if not self._tools_running:
            self._tools_idle.set()
        status = TOOL_STATUS.get(part.outcome, "failed")
        emitter = self._emitter
        await emitter.emit(
            ToolFinishedEvent(
                session_id=emitter.session_id,
                run_id=emitter.run_id,
                seq=0,
                tool_call_id=part.tool_call_id,
                status=status,
                result=_jsonable(part.content) if status == "completed" else None,
                error=None if status == "completed" else part.model_response_str(),
            )
        )


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)
