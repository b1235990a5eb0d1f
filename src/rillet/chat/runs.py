"""Run lifecycle: submit, execute, cancel, subscribe; the per-session busy policy.

`RunService` is the chat core's entry point for every transport. A submitted message is saved
before anything else; the run then executes as a task that appends events to the run's log, and
connections only subscribe to logs (DESIGN.md "The one idea"). Whatever ends a run (completion,
cancel, error, shutdown) goes through `_finish`, which saves the assistant message with its
status and closes the log with `run.finished`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    UserPromptPart,
)
from pydantic_ai.usage import RequestUsage

from rillet.chat.agent import AgentOutcome, AgentRunner
from rillet.chat.emitter import RunEmitter
from rillet.chat.limits import MessageRateLimiter
from rillet.chat.models import ResolvedModel, cost_usd, default_model_id, resolve_model
from rillet.chat.tools import builtin_tools
from rillet.errors import (
    BusyError,
    InternalError,
    InvalidFrameError,
    NotFoundError,
    ProtocolError,
    ResumeExpiredError,
    TooLargeError,
)
from rillet.events import (
    MESSAGE_STATUS_FOR_RUN,
    ErrorEvent,
    FinalRunStatus,
    MessageCompletedEvent,
    Mode,
    RunEvent,
    RunFinishedEvent,
    RunStartedEvent,
    UsageEvent,
)
from rillet.settings import BusyPolicy, Settings
from rillet.storage.base import SessionRecord, Store, TurnStart, UsageRecord
from rillet.streams.base import Command, StreamBackend

logger = logging.getLogger(__name__)

INTERRUPT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class MessageRequest:
    """A user message as any transport hands it to the core."""

    query: str
    client_id: str | None = None
    session_id: str | None = None
    mode: Mode = "agent"
    model: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    regenerate: bool = False
    """Answer the session's last user message again, in place of its last answer (`query` is
    ignored; `message_id` may name that message or answer). Refused as `busy` while a run is
    active in the session, whatever the policy."""
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    session: SessionRecord
    session_created: bool
    run_id: str
    message_id: str
    duplicate: bool = False
    queued: bool = False


@dataclass(frozen=True, slots=True)
class _Job:
    """Everything needed to execute a run; also the queued item of the `enqueue` policy."""

    run_id: str
    session_id: str
    user_id: str
    message_id: str
    model: str
    mode: Mode
    prompt: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> _Job:
        return cls(**item)


class RunService:
    """Starts, executes, cancels and streams runs."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        streams: StreamBackend,
        limiter: MessageRateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.streams = streams
        self._limiter = limiter or MessageRateLimiter(settings.messages_per_minute)
        self._runner = AgentRunner(
            tools=builtin_tools(),
            system_prompt=settings.system_prompt,
            max_requests=settings.max_model_requests,
            tool_timeout_s=settings.tool_timeout_s,
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._accepting = True

    # --- submitting --------------------------------------------------------------------------

    async def submit(
        self, user_id: str, request: MessageRequest, *, policy: BusyPolicy | None = None
    ) -> Submitted:
        """Save the user message and start (or queue) its run. Raises a `ProtocolError`
        (`too_large`, `rate_limited`, `not_found`, `busy`) when the message is refused."""
        if not self._accepting:
            raise InternalError("the server is shutting down; reconnect to another node")
        if len(request.query) > self.settings.max_message_chars:
            raise TooLargeError(
                f"the message has {len(request.query)} characters; "
                f"the limit is {self.settings.max_message_chars}"
            )
        if not request.query.strip() and not request.regenerate:
            raise InvalidFrameError("the message is empty")
        model = self.resolve(request.model)
        # The answer a regeneration replaces must not be running, so it never queues or interrupts.
        policy = "reject" if request.regenerate else policy or self.settings.busy_policy
        if request.session_id is not None:
            await self.store.get_session(user_id, request.session_id)
            active = await self.streams.active_run(request.session_id)
            if (
                active is not None
                and policy == "reject"
                and not await self._is_dup(user_id, request)
            ):
                raise BusyError("a run is already active in this session")
        await self._limiter.hit(user_id)
        if request.regenerate:
            turn = await self._begin_regeneration(user_id, request, model.info.id)
        else:
            turn = await self.store.begin_turn(
                user_id=user_id,
                session_id=request.session_id,
                client_id=request.client_id,
                text=request.query,
                attachments=request.attachments or None,
                model=model.info.id,
                mode=request.mode,
            )
        submitted = Submitted(
            session=turn.session,
            session_created=turn.session_created,
            run_id=turn.run.id,
            message_id=turn.run.message_id,
            duplicate=turn.duplicate,
        )
        if turn.duplicate:
            return submitted
        job = _Job(
            run_id=turn.run.id,
            session_id=turn.session.id,
            user_id=user_id,
            message_id=turn.run.message_id,
            model=model.info.id,
            mode=request.mode,
            prompt=_text_of(turn.user_message.parts) if request.regenerate else request.query,
        )
        await self.streams.open_log(job.run_id)
        if policy == "enqueue":
            if not await self.streams.claim_or_enqueue(job.session_id, asdict(job)):
                return replace(submitted, queued=True)
        else:
            await self._claim(job, policy)
        self._spawn(job)
        return submitted

    async def _begin_regeneration(
        self, user_id: str, request: MessageRequest, model: str
    ) -> TurnStart:
        if request.session_id is None:
            raise InvalidFrameError("a regeneration needs the session whose answer it replaces")
        return await self.store.begin_regeneration(
            user_id=user_id,
            session_id=request.session_id,
            model=model,
            mode=request.mode,
            message_id=request.message_id,
        )

    def resolve(self, model_id: str | None) -> ResolvedModel:
        return resolve_model(model_id or default_model_id(self.settings), self.settings)

    async def _is_dup(self, user_id: str, request: MessageRequest) -> bool:
        """A resent client message id is never refused as busy: it joins its first run."""
        if request.client_id is None:
            return False
        return await self.store.run_for_client_id(user_id, request.client_id) is not None

    async def _claim(self, job: _Job, policy: BusyPolicy) -> None:
        for _ in range(INTERRUPT_ATTEMPTS):
            active = await self.streams.claim_session(job.session_id, job.run_id)
            if active is None:
                return
            if policy != "interrupt":
                break
            await self.cancel_run(active)
            await self._wait_finished(active)
        # Lost a race with another message: this turn was saved, so it ends visibly.
        await self._finish(job, None, "failed", "busy", BusyError("a run is already active"))
        raise BusyError("a run is already active in this session")

    async def _wait_finished(self, run_id: str) -> None:
        with contextlib.suppress(ResumeExpiredError):
            async for _ in self.streams.subscribe(run_id, await self.streams.last_seq(run_id)):
                pass

    # --- cancelling and subscribing -----------------------------------------------------------

    async def cancel(self, user_id: str, session_id: str, run_id: str | None = None) -> str:
        """Ask the run (default: the session's active run) to stop; returns its id."""
        await self.store.get_session(user_id, session_id)
        if run_id is None:
            run_id = await self.streams.active_run(session_id)
            if run_id is None:
                raise NotFoundError("no run is active in this session")
        else:
            run = await self.store.get_run(user_id, run_id)
            if run.session_id != session_id:
                raise NotFoundError(f"run {run_id} is not in session {session_id}")
        await self.cancel_run(run_id)
        return run_id

    async def cancel_run(self, run_id: str) -> None:
        await self.streams.send_command(run_id, Command("cancel"))

    async def subscribe(self, user_id: str, run_id: str, after: int = 0) -> AsyncIterator[RunEvent]:
        """The run's events after seq `after`, then live ones until `run.finished`."""
        await self.store.get_run(user_id, run_id)
        async for event in self.streams.subscribe(run_id, after):
            yield event

    # --- executing ----------------------------------------------------------------------------

    def _spawn(self, job: _Job) -> None:
        task = asyncio.create_task(self._execute(job), name=f"run-{job.run_id}")
        self._tasks[job.run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.run_id, None))

    async def _execute(self, job: _Job) -> None:
        emitter = self._emitter(job)
        cancel = asyncio.Event()
        watcher = asyncio.create_task(self._watch_commands(job.run_id, cancel))
        outcome: AgentOutcome | None = None
        status: FinalRunStatus = "failed"
        error: ProtocolError | None = None
        try:
            await emitter.emit(
                RunStartedEvent(
                    session_id=job.session_id,
                    run_id=job.run_id,
                    seq=0,
                    message_id=job.message_id,
                    model=job.model,
                    mode=job.mode,
                )
            )
            await self.streams.announce_run(job.session_id, job.run_id)
            outcome = await self._run_agent(job, emitter, cancel)
            status, error = outcome.status, outcome.error
        except asyncio.CancelledError:
            status, error = "interrupted", InternalError("the server stopped during the run")
        except Exception as exc:
            logger.exception("run %s failed", job.run_id)
            error = exc if isinstance(exc, ProtocolError) else InternalError("internal error")
        finally:
            watcher.cancel()
        history = outcome.new_messages if outcome is not None else []
        if status != "completed" and not any(_has_prompt(m) for m in history):
            history = [ModelRequest(parts=[UserPromptPart(content=job.prompt)]), *history]
        await self._finish(job, emitter, status, _reason(status, error), error, history)

    async def _run_agent(
        self, job: _Job, emitter: RunEmitter, cancel: asyncio.Event
    ) -> AgentOutcome:
        model = self.resolve(job.model)
        stored = await self.store.load_history(job.session_id)
        history = ModelMessagesTypeAdapter.validate_python(stored) if stored else []

        async def on_usage(usage: RequestUsage, latency_ms: float | None) -> None:
            cost = cost_usd(model.info, usage.input_tokens, usage.output_tokens)
            await self.store.add_usage(
                UsageRecord(
                    run_id=job.run_id,
                    user_id=job.user_id,
                    model=model.info.id,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_usd=cost,
                    latency_ms=latency_ms,
                    created_at=datetime.now(UTC),
                )
            )
            await emitter.emit(
                UsageEvent(
                    session_id=job.session_id,
                    run_id=job.run_id,
                    seq=0,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_usd=cost,
                )
            )

        return await self._runner.run(
            prompt=job.prompt,
            history=history,
            model=model,
            emitter=emitter,
            cancel=cancel,
            on_usage=on_usage,
        )

    async def _watch_commands(self, run_id: str, cancel: asyncio.Event) -> None:
        async for command in self.streams.commands(run_id):
            if command.kind == "cancel":
                cancel.set()

    def _emitter(self, job: _Job) -> RunEmitter:
        return RunEmitter(
            self.streams,
            session_id=job.session_id,
            run_id=job.run_id,
            window_s=self.settings.coalesce_window_ms / 1000.0,
            max_chars=self.settings.coalesce_max_chars,
        )

    async def _finish(
        self,
        job: _Job,
        emitter: RunEmitter | None,
        status: FinalRunStatus,
        reason: str,
        error: ProtocolError | None,
        history: list[ModelMessage] | None = None,
    ) -> None:
        """Save the answer and close the log; every run ends here exactly once."""
        emitter = emitter or self._emitter(job)
        if emitter.last_seq == 0:
            await emitter.emit(
                RunStartedEvent(
                    session_id=job.session_id,
                    run_id=job.run_id,
                    seq=0,
                    message_id=job.message_id,
                    model=job.model,
                    mode=job.mode,
                )
            )
        await emitter.flush()
        message_status = MESSAGE_STATUS_FOR_RUN[status]
        session_id, run_id = job.session_id, job.run_id
        input_tokens, output_tokens, cost = 0, 0, None
        try:
            if error is not None:
                await emitter.emit(
                    ErrorEvent(
                        session_id=session_id,
                        run_id=run_id,
                        seq=0,
                        code=error.code,
                        message=error.message,
                        retryable=error.retryable,
                    )
                )
            run = await self.store.finish_run(
                run_id,
                status=status,
                reason=reason,
                error=error.message if error is not None else None,
                parts=emitter.parts.parts,
                message_status=message_status,
            )
            input_tokens, output_tokens, cost = run.input_tokens, run.output_tokens, run.cost_usd
            if history:
                await self.store.append_history(
                    session_id=session_id,
                    run_id=run_id,
                    messages=ModelMessagesTypeAdapter.dump_python(history, mode="json"),
                )
        except Exception:
            # The log must still end, or every subscriber would wait forever.
            logger.exception("saving the end of run %s failed", run_id)
        await emitter.emit(
            MessageCompletedEvent(
                session_id=session_id,
                run_id=run_id,
                seq=0,
                message_id=job.message_id,
                parts=emitter.parts.parts,
                status=message_status,
            )
        )
        await emitter.emit(
            RunFinishedEvent(
                session_id=session_id,
                run_id=run_id,
                seq=0,
                status=status,
                reason=reason,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cost_usd=cost,
            )
        )
        await emitter.close()
        await self.streams.expire(job.run_id, self.settings.event_retention_s)
        following = await self.streams.release_session(job.session_id, job.run_id)
        if following is not None:
            self._spawn(_Job.from_item(following))

    # --- lifecycle ----------------------------------------------------------------------------

    async def recover(self) -> int:
        """Mark runs left `running` by a dead single process as `interrupted`."""
        count = 0
        for run in await self.store.runs_with_status("running"):
            if await self.streams.has_log(run.id):
                continue
            await self.store.finish_run(
                run.id,
                status="interrupted",
                reason="interrupted",
                error="the server stopped during the run",
                parts=[],
                message_status="interrupted",
            )
            count += 1
        return count

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def active_runs(self) -> int:
        return len(self._tasks)

    async def drain(self, deadline_s: float) -> None:
        """Stop accepting messages, let runs finish until the deadline, then interrupt them."""
        self._accepting = False
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=deadline_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)


def _text_of(parts: list[dict[str, Any]]) -> str:
    return "\n".join(part["text"] for part in parts if part.get("type") == "text")


def _has_prompt(message: ModelMessage) -> bool:
    return isinstance(message, ModelRequest) and any(
        isinstance(part, UserPromptPart) for part in message.parts
    )


def _reason(status: FinalRunStatus, error: ProtocolError | None) -> str:
    if error is not None and status == "failed":
        return error.code
    return status
