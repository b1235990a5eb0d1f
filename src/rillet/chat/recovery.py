"""Run leases over time: keep this node's alive, end the runs of nodes that died.

With a shared stream backend every process runs one `LeaseKeeper`. Every third of the lease TTL
it renews the leases of the runs this process executes (one Redis call for all of them); a run
whose lease another node took over is stopped here. Then it takes over the runs whose lease
expired, which only one node in the deployment wins per run, and ends each as `interrupted`
(`RunService.spawn_recovery`). Now and then it also marks runs that never got a log (their node
died while starting them) as `interrupted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from rillet.chat.runs import RunService
from rillet.errors import RilletError

logger = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0
"""How often runs without a log are looked for in the database."""


class LeaseKeeper:
    """Renews this process's run leases and recovers the runs of dead nodes."""

    def __init__(self, runs: RunService) -> None:
        self._runs = runs
        self._ttl = runs.settings.lease_ttl_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="lease-keeper")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        interval = self._ttl / 3
        since_sweep = 0.0
        while True:
            await asyncio.sleep(interval)
            since_sweep += interval
            try:
                await self.tick(sweep=since_sweep >= SWEEP_EVERY_S)
            except (RilletError, OSError) as exc:
                logger.warning("keeping run leases failed: %s", exc)
            except Exception:
                logger.exception("keeping run leases failed")
            if since_sweep >= SWEEP_EVERY_S:
                since_sweep = 0.0

    async def tick(self, *, sweep: bool = False) -> None:
        """One round: renew, take over the expired, and (with `sweep`) end log-less runs."""
        runs, streams = self._runs, self._runs.streams
        for run_id in await streams.renew_leases(runs.held_leases, self._ttl):
            logger.warning("run %s was taken over by another node; stopping it here", run_id)
            runs.lease_lost(run_id)
        if not runs.accepting:
            return  # draining: this node ends its own runs and takes on no others
        for run_id, fence in await streams.take_expired_leases(self._ttl):
            runs.spawn_recovery(run_id, fence)
        if sweep:
            await runs.recover(min_age_s=2 * self._ttl + 10)
