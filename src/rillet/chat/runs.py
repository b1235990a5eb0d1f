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
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    UserPromptPart,
)
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.usage import RequestUsage

from rillet.chat.agent import AgentOutcome, AgentRunner
from rillet.chat.emitter import RunEmitter
from rillet.chat.jobs import (
    Job,
    MessageRequest,
    Submitted,
    has_prompt,
    reason_for,
    result_parts,
    text_of,
    tool_json,
)
from rillet.chat.limits import MessageRateLimiter
from rillet.chat.models import ResolvedModel, cost_usd, default_model_id, resolve_model
from rillet.chat.parts import parts_from_events
from rillet.chat.tools import builtin_tools
from rillet.errors import (
    BusyError,
    InternalError,
    InvalidFrameError,
    LeaseLostError,
    NotFoundError,
    ProtocolError,
    ResumeExpiredError,
    StreamError,
    TooLargeError,
)
from rillet.events import (
    MESSAGE_STATUS_FOR_RUN,
    ErrorEvent,
    FinalRunStatus,
    MessageCompletedEvent,
    RunEvent,
    RunFinishedEvent,
    UsageEvent,
)
from rillet.settings import BusyPolicy, Settings
from rillet.storage.base import RunRecord, Store, TurnStart, UsageRecord
from rillet.streams.base import Command, StreamBackend

logger = logging.getLogger(__name__)

INTERRUPT_GRACE_S = 15.0
"""How long past the tool timeout an interrupting message waits for the session."""


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
        self._leases: dict[str, int] = {}
        """Fences of the run leases this process holds, by run id (see `chat/recovery.py`)."""
        self._lost: set[str] = set()

    # --- submitting --------------------------------------------------------------------------

    async def submit(
        self, user_id: str, request: MessageRequest, *, policy: BusyPolicy | None = None
    ) -> Submitted:
        """Save the user message and start (or queue) its run. Raises a `ProtocolError`
        (`too_large`, `rate_limited`, `not_found`, `busy`) when the message is refused."""
        self._check(request)
        model = self.resolve(request.model)
        # The answer a regeneration replaces must not be running, so it never queues or interrupts.
        policy = "reject" if request.regenerate else policy or self.settings.busy_policy
        if request.session_id is not None:
            # Ownership is checked by `begin_turn`; here only before refusing as busy.
            active = await self.streams.active_run(request.session_id)
            if active is not None and policy == "reject":
                await self.store.get_session(user_id, request.session_id)
                if not await self._is_dup(user_id, request):
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
                attachments=[*request.attachments, *result_parts(request.tool_results)] or None,
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
        job = Job(
            run_id=turn.run.id,
            session_id=turn.session.id,
            user_id=user_id,
            message_id=turn.run.message_id,
            model=model.info.id,
            mode=request.mode,
            prompt=text_of(turn.user_message.parts) if request.regenerate else request.query,
            history=(
                None
                if request.history is None
                else ModelMessagesTypeAdapter.dump_python(request.history, mode="json")
            ),
            client_tools=[tool_json(tool) for tool in request.client_tools],
            tool_results=dict(request.tool_results),
            instructions=request.instructions,
            fresh=turn.session_created,
        )
        fence: int | None = None
        try:
            await self.streams.open_log(job.run_id)
            if policy == "enqueue":
                if not await self.streams.claim_or_enqueue(job.session_id, asdict(job)):
                    return replace(submitted, queued=True)
            else:
                # Leased before the session is claimed, so a crash in between is recovered.
                fence = await self._lease(job.run_id)
                await self._claim(job, policy, fence)
        except StreamError as exc:
            await self._fail_unstarted(job, exc)
            raise InternalError("the event stream is unavailable; try again shortly") from exc
        self._spawn(job, fence)
        return submitted

    def _check(self, request: MessageRequest) -> None:
        """Refusals that need no storage: shutdown, size, emptiness, tool name clashes."""
        if not self._accepting:
            raise InternalError("the server is shutting down; reconnect to another node")
        if len(request.query) > self.settings.max_message_chars:
            raise TooLargeError(
                f"the message has {len(request.query)} characters; "
                f"the limit is {self.settings.max_message_chars}"
            )
        if not request.query.strip() and not request.regenerate and not request.tool_results:
            raise InvalidFrameError("the message is empty")
        clash = sorted({t.name for t in request.client_tools} & self._runner.tool_names)
        if clash:
            raise InvalidFrameError(f"client tools may not use server tool names: {clash}")

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

    async def _claim(self, job: Job, policy: BusyPolicy, fence: int) -> None:
        # `interrupt`: cancel the active run and wait until it ends. Its node releases the
        # session a few round trips after `run.finished`, so a finished run that still holds
        # the session is waited for (with backoff), not taken as a lost race.
        deadline = time.monotonic() + self.settings.tool_timeout_s + INTERRUPT_GRACE_S
        cancelled: set[str] = set()
        pause = 0.01
        while True:
            active = await self.streams.claim_session(job.session_id, job.run_id)
            if active is None:
                return
            if policy != "interrupt" or time.monotonic() > deadline:
                break
            if active not in cancelled:
                cancelled.add(active)
                await self.cancel_run(active)
                await self._wait_finished(active)
            else:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
        # Lost a race with another message: this turn was saved, so it ends visibly.
        await self._finish(
            job, self._emitter(job, fence), "failed", "busy", BusyError("a run is already active")
        )
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

    async def subscribe(
        self, user_id: str, run_id: str, after: int = 0, *, owner_known: bool = False
    ) -> AsyncIterator[RunEvent]:
        """The run's events after seq `after`, then live ones until `run.finished`. A failing
        stream backend ends it with a retryable `InternalError`, never a hang. `owner_known`
        skips the ownership query for a run the caller just submitted itself."""
        if not owner_known:
            await self.store.get_run(user_id, run_id)
        try:
            async for event in self.streams.subscribe(run_id, after):
                yield event
        except StreamError as exc:
            raise InternalError("the event stream failed; subscribe again shortly") from exc

    # --- executing ----------------------------------------------------------------------------

    def _spawn(self, job: Job, fence: int | None = None) -> None:
        task = asyncio.create_task(self._execute(job, fence), name=f"run-{job.run_id}")
        self._track(job.run_id, task)

    def _track(self, run_id: str, task: asyncio.Task[None]) -> None:
        self._tasks[run_id] = task

        def done(_: asyncio.Task[None]) -> None:
            if self._tasks.get(run_id) is task:
                del self._tasks[run_id]
                # A task that died without ending its run lets the lease lapse: a node ends it.
                self._leases.pop(run_id, None)

        task.add_done_callback(done)

    async def _lease(self, run_id: str) -> int:
        fence = await self.streams.acquire_lease(run_id, self.settings.lease_ttl_s)
        self._leases[run_id] = fence
        return fence

    async def _fail_unstarted(self, job: Job, exc: Exception) -> None:
        """A run that could not start because the streams failed: its record still ends."""
        logger.error("run %s could not start: %s", job.run_id, exc)
        self._leases.pop(job.run_id, None)
        try:
            await self.store.finish_run(
                job.run_id,
                status="failed",
                reason="internal",
                error=f"the event stream failed: {exc}",
                parts=[],
                message_status="error",
            )
        except Exception:
            logger.exception("saving the failure of run %s failed", job.run_id)

    async def _execute(self, job: Job, fence: int | None = None) -> None:
        if fence is None:
            try:
                fence = await self._lease(job.run_id)
            except StreamError as exc:
                await self._fail_unstarted(job, exc)
                return
        emitter = self._emitter(job, fence)
        cancel = asyncio.Event()
        watcher = asyncio.create_task(self._watch_commands(job.run_id, cancel))
        outcome: AgentOutcome | None = None
        status: FinalRunStatus = "failed"
        error: ProtocolError | None = None
        try:
            await emitter.emit(job.started_event())
            await self.streams.announce_run(job.session_id, job.run_id)
            outcome = await self._run_agent(job, emitter, cancel)
            status, error = outcome.status, outcome.error
        except asyncio.CancelledError:
            if job.run_id in self._lost:
                return self._forget(job.run_id)
            status, error = "interrupted", InternalError("the server stopped during the run")
        except LeaseLostError:
            return self._forget(job.run_id)
        except Exception as exc:
            logger.exception("run %s failed", job.run_id)
            error = exc if isinstance(exc, ProtocolError) else InternalError("internal error")
        finally:
            watcher.cancel()
        history = outcome.new_messages if outcome is not None else []
        if status != "completed" and job.prompt and not any(has_prompt(m) for m in history):
            history = [ModelRequest(parts=[UserPromptPart(content=job.prompt)]), *history]
        if job.history:
            # Stored with the run, so the session a stateless request made holds it all.
            history = [*ModelMessagesTypeAdapter.validate_python(job.history), *history]
        reason = reason_for(status, error)
        if outcome is not None and outcome.pending_calls:
            reason = "tool_calls"
        await self._finish(job, emitter, status, reason, error, history)

    async def _run_agent(
        self, job: Job, emitter: RunEmitter, cancel: asyncio.Event
    ) -> AgentOutcome:
        model = self.resolve(job.model)
        if job.history is not None or job.fresh:
            stored = job.history or []
        else:
            stored = await self.store.load_history(job.session_id)
        history = ModelMessagesTypeAdapter.validate_python(stored) if stored else []

        async def on_usage(usage: RequestUsage, latency_ms: float | None) -> None:
            cost = cost_usd(model.info, usage.input_tokens, usage.output_tokens)
            user_total = await self.store.add_usage(
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
                    user_cost_usd=user_total,
                )
            )

        return await self._runner.run(
            prompt=job.prompt,
            history=history,
            model=model,
            emitter=emitter,
            cancel=cancel,
            on_usage=on_usage,
            client_tools=[ToolDefinition(**tool) for tool in job.client_tools],
            tool_results=job.tool_results,
            instructions=job.instructions,
        )

    async def _watch_commands(self, run_id: str, cancel: asyncio.Event) -> None:
        async for command in self.streams.commands(run_id):
            if command.kind == "cancel":
                cancel.set()

    def _emitter(
        self,
        job: Job,
        fence: int | None,
        first_seq: int = 1,
        parts: list[dict[str, Any]] | None = None,
    ) -> RunEmitter:
        return RunEmitter(
            self.streams,
            session_id=job.session_id,
            run_id=job.run_id,
            window_s=self.settings.coalesce_window_ms / 1000.0,
            max_chars=self.settings.coalesce_max_chars,
            first_seq=first_seq,
            fence=fence,
            parts=parts,
        )

    async def _finish(
        self,
        job: Job,
        emitter: RunEmitter,
        status: FinalRunStatus,
        reason: str,
        error: ProtocolError | None,
        history: list[ModelMessage] | None = None,
    ) -> None:
        """Save the answer and close the log; every run ends here exactly once. The database
        record is saved even when the log cannot be written (its Redis is down); when another
        node has taken the run over (`LeaseLostError`), that node ends it instead."""
        message_status = MESSAGE_STATUS_FOR_RUN[status]
        session_id, run_id = job.session_id, job.run_id
        input_tokens, output_tokens, cost = 0, 0, None
        log_ok = True
        try:
            if emitter.last_seq == 0:
                await emitter.emit(job.started_event())
            await emitter.flush()
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
        except LeaseLostError:
            return self._forget(run_id)
        except StreamError as exc:
            logger.error("the log of run %s cannot be written: %s", run_id, exc)
            log_ok = False
        try:
            run = await self.store.finish_run(
                run_id,
                status=status,
                reason=reason,
                error=error.message if error is not None else None,
                parts=emitter.parts.parts,
                message_status=message_status,
                history=ModelMessagesTypeAdapter.dump_python(history, mode="json")
                if history
                else None,
            )
            input_tokens, output_tokens, cost = run.input_tokens, run.output_tokens, run.cost_usd
        except Exception:
            # The log must still end, or every subscriber would wait forever.
            logger.exception("saving the end of run %s failed", run_id)
        try:
            if log_ok:
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
            if emitter.fence is not None:
                await self.streams.release_lease(run_id, emitter.fence)
            following = await self.streams.release_session(job.session_id, job.run_id)
        except LeaseLostError:
            return self._forget(run_id)
        except StreamError as exc:
            logger.error("closing the log of run %s failed: %s", run_id, exc)
            following = None
        self._forget(run_id)
        if following is not None:
            self._spawn(Job.from_item(following))

    def _forget(self, run_id: str) -> None:
        self._leases.pop(run_id, None)
        self._lost.discard(run_id)

    # --- leases and recovery (driven by `chat/recovery.py`) -------------------------------------

    @property
    def held_leases(self) -> dict[str, int]:
        """The run leases this process holds now: run id -> fence."""
        return dict(self._leases)

    def lease_lost(self, run_id: str) -> None:
        """Another node took the run over: stop it here without ending it."""
        self._lost.add(run_id)
        task = self._tasks.get(run_id)
        if task is not None:
            task.cancel()

    def spawn_recovery(self, run_id: str, fence: int) -> None:
        """End, as `interrupted`, a run whose node died; this process won its lease (`fence`)."""
        self._leases[run_id] = fence
        task = asyncio.create_task(self._recover(run_id, fence), name=f"recover-{run_id}")
        self._track(run_id, task)

    async def _recover(self, run_id: str, fence: int) -> None:
        try:
            await self._recover_run(run_id, fence)
        except Exception:
            # Not renewed any more, the lease lapses again and a node tries once more.
            logger.exception("recovering run %s failed; it will be tried again", run_id)
            self._leases.pop(run_id, None)

    async def _recover_run(self, run_id: str, fence: int) -> None:
        record = await self.store.get_run_any(run_id)
        events = await self.streams.read_all(run_id)
        if record is None:
            await self.streams.release_lease(run_id, fence)
            return self._forget(run_id)
        job = Job(
            run_id=run_id,
            session_id=record.session_id,
            user_id=record.user_id,
            message_id=record.message_id,
            model=record.model,
            mode=record.mode,
            prompt=await self._prompt_of(record),
        )
        emitter = self._emitter(
            job, fence, first_seq=len(events) + 1, parts=parts_from_events(events)
        )
        if events and isinstance(events[-1], RunFinishedEvent):
            # It ended; its node died before it let the session go.
            await self.streams.release_lease(run_id, fence)
            following = await self.streams.release_session(job.session_id, run_id)
            self._forget(run_id)
            if following is not None:
                self._spawn(Job.from_item(following))
            return
        logger.warning("run %s lost its node; ending it as interrupted", run_id)
        status: FinalRunStatus = "interrupted"
        error: ProtocolError | None = InternalError(
            "the server running this answer stopped; the partial answer was saved"
        )
        if record.status not in ("running", "interrupted"):
            # Its node saved the end in the database but died before closing the log.
            status, error = record.status, None  # type: ignore[assignment]
        history: list[ModelMessage] = [ModelRequest(parts=[UserPromptPart(content=job.prompt)])]
        await self._finish(job, emitter, status, record.reason or status, error, history)

    async def _prompt_of(self, record: RunRecord) -> str:
        page = await self.store.list_messages(record.user_id, record.session_id, limit=100)
        for message in page.items:
            if message.id == record.user_message_id:
                return text_of(message.parts)
        return ""

    # --- lifecycle ----------------------------------------------------------------------------

    async def recover(self, min_age_s: float = 0.0) -> int:
        """Mark runs left `running` without an event log (by a dead single process, or a node
        that died before it opened the log) as `interrupted`. With several nodes, `min_age_s`
        spares runs another node is starting right now."""
        count = 0
        now = datetime.now(UTC)
        for run in await self.store.runs_with_status("running"):
            if (now - run.created_at).total_seconds() < min_age_s:
                continue
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

    def stop_accepting(self) -> None:
        """Refuse new messages from now on (the server drains)."""
        self._accepting = False

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
