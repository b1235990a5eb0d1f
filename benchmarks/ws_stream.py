"""WebSocket streaming benchmark: Rillet against the transport floor, on the same machine, same run.

Starts every server in `servers.default_specs()` (the floor in `floor.py` first, then Rillet with
its in-memory stream backend), warms each up, then runs each scenario `--repeat` times, alternating
the order of the servers between repetitions. A scenario opens one WebSocket per stream and
completes `init` first; the measured window starts when all the `message` frames are sent at once
(each asks the `bench` model for a new session) and ends when the last stream reaches `status`
END (wall time) or 0.25 s later (server CPU time, so trailing work is charged too). Every stream's
text is checked to be exactly `w1 w2 ... wN`. A row whose transport is `ui` speaks the AI SDK UI
message stream instead: one HTTP/1.1 connection per stream, opened before the window, and a
`useChat` request to `POST /v1/chat` read until `data: [DONE]` (`uiclient.py`). Prints one table
per scenario (medians) with the ratios to the floor and their targets; `--json PATH` also writes
every measurement. Run it with `make bench` or
`uv run --frozen python benchmarks/ws_stream.py --repeat 3`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import resource
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil  # type: ignore[import-untyped]
import uiclient
from redis_server import RedisCounters
from report import (
    Failure,
    Measurement,
    Targets,
    comparison_json,
    format_pair,
    format_scenario,
    percentile,
    summarise,
)
from servers import ServerError, ServerProcess, ServerSpec, default_specs
from uiclient import UIConnection
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException
from wsclient import (
    Compression,
    StreamError,
    StreamProgress,
    StreamResult,
    open_connection,
    run_stream,
)

T = TypeVar("T")

REDIS_CPU_RATIO_MAX = 1.2
"""Redis mode may cost at most this many times memory mode's server CPU per word."""
REDIS_ADDED_GAP_MS_MAX = 10.0
"""Redis mode may add at most this much to memory mode's p99 gap."""
SETTLE_S = 0.25
"""Pause after the last END before reading the server's CPU time, so trailing work counts."""
CONNECT_CONCURRENCY = 64
"""Handshakes in flight at once while opening a scenario's connections (outside the window)."""


@dataclass(frozen=True)
class Scenario:
    """`streams` concurrent streams of `words` words at `rate` words/s (0 = unpaced)."""

    key: str
    title: str
    streams: int
    words: int
    rate: float
    targets: Targets = field(default_factory=Targets)
    timeout_s: float = 180.0
    """Streams without END this long after the start count as failed (hung)."""


SCENARIOS = {
    "a": Scenario("a", "(a) 50 concurrent streams x 2,000 words, unpaced", 50, 2000, 0.0),
    "b": Scenario(
        "b",
        "(b) 500 concurrent new sessions x 100 words at 50 words/s",
        500,
        100,
        50.0,
        Targets(ttft_p99_ratio_max=2.0),
        # 30 times the paced duration, and longer than Rillet's 30 s database pool timeout.
        timeout_s=60.0,
    ),
}
WARMUP = (Scenario("warm-1", "", 10, 200, 0.0), Scenario("warm-2", "", 20, 20, 100.0))


Connection = ClientConnection | UIConnection


async def _open_all(
    server: ServerProcess, count: int, compression: Compression
) -> list[Connection]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> Connection:
        async with gate:
            if server.spec.transport == "ui":
                return await uiclient.open_connection(server.base_url)
            return await open_connection(server.ws_url, compression)

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        opened = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(
            *(ws.close() for ws in opened if isinstance(ws, Connection)),
            return_exceptions=True,
        )
        raise


async def measure(
    server: ServerProcess, scenario: Scenario, repetition: int, compression: Compression
) -> Measurement:
    """Run `scenario` once against `server`; raise `StreamError` if any stream failed."""
    server.check_alive()
    conns = await _open_all(server, scenario.streams, compression)
    try:
        gc.collect()
        machine_before = _machine_busy_seconds()
        cpu_before = server.cpu_seconds()
        redis_before = server.redis.counters() if server.redis else None
        client_before = time.process_time()
        started = time.perf_counter()
        progress = [StreamProgress() for _ in conns]
        tasks = [
            asyncio.ensure_future(_run_stream(ws, scenario.words, scenario.rate, state))
            for ws, state in zip(conns, progress, strict=True)
        ]
        await asyncio.wait(tasks, timeout=scenario.timeout_s)
        results = _successes(tasks, progress, started, scenario.timeout_s)
        ended = max(result.ended_at for result in results)
        await asyncio.sleep(SETTLE_S)
        server_cpu = server.cpu_seconds() - cpu_before
        client_cpu = time.process_time() - client_before
        redis = server.redis.counters() - redis_before if server.redis and redis_before else None
        window = time.perf_counter() - started
        other_cpu = _machine_busy_seconds() - machine_before - server_cpu - client_cpu
    finally:
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    server.check_alive()
    words = sum(result.words for result in results)
    frames = sum(result.frames for result in results)
    ttfts = sorted(result.ttft_s for result in results)
    gaps = sorted(gap for result in results for gap in result.gaps_s())
    return Measurement(
        server=server.spec.name,
        repetition=repetition,
        streams=len(results),
        words=words,
        wall_s=ended - started,
        words_per_s=words / (ended - started),
        server_cpu_us_per_word=server_cpu / words * 1e6,
        client_cpu_us_per_word=client_cpu / words * 1e6,
        ttft_p50_ms=percentile(ttfts, 50) * 1e3,
        ttft_p99_ms=percentile(ttfts, 99) * 1e3,
        gap_p50_ms=percentile(gaps, 50) * 1e3,
        gap_p99_ms=percentile(gaps, 99) * 1e3,
        frames=frames,
        words_per_frame=words / frames,
        other_load_pct=max(0.0, other_cpu) / (window * (os.cpu_count() or 1)) * 100,
        **(_redis_metrics(redis, words) if redis else {}),
    )


def _redis_metrics(redis: RedisCounters, words: int) -> dict[str, float]:
    return {
        "redis_commands_per_kword": redis.commands / words * 1000,
        "redis_scripts_per_kword": redis.script_calls / words * 1000,
        "redis_cpu_us_per_word": redis.cpu_s / words * 1e6,
    }


def _run_stream(
    conn: Connection, words: int, rate: float, state: StreamProgress
) -> Coroutine[Any, Any, StreamResult]:
    if isinstance(conn, UIConnection):
        return uiclient.run_stream(conn, words, rate, state)
    return run_stream(conn, words, rate, state)


def _successes(
    tasks: Sequence[asyncio.Future[StreamResult]],
    progress: Sequence[StreamProgress],
    started: float,
    timeout_s: float,
) -> list[StreamResult]:
    """The streams' results, or a `StreamError` that counts failed and hung streams by kind.

    Streams still running (no END within `timeout_s`) are cancelled and described by
    the last frame type they received. The error also gives the timings of the streams that did
    complete, since a partly failed run still says something about the server.
    """
    kinds: Counter[str] = Counter()
    for task, state in zip(tasks, progress, strict=True):
        if not task.done():
            task.cancel()
            kinds[
                f"no END within {timeout_s:g} s (last frame {state.last_type or 'none'!r}"
                f", {'some' if state.tokens else 'no'} tokens)"
            ] += 1
        elif task.exception() is not None:
            kinds[_failure_kind(task.exception())] += 1
    if not kinds:
        return [task.result() for task in tasks]
    summary = "; ".join(f"{count} x {kind}" for kind, count in kinds.most_common())
    done = [task.result() for task in tasks if task.done() and task.exception() is None]
    if done:
        ttfts = sorted(result.ttft_s for result in done)
        summary += (
            f". The {len(done)} complete streams: TTFT p50 {percentile(ttfts, 50) * 1e3:.0f} ms,"
            f" p99 {percentile(ttfts, 99) * 1e3:.0f} ms, max {ttfts[-1] * 1e3:.0f} ms; last END"
            f" {max(result.ended_at for result in done) - started:.1f} s after the start"
        )
    raise StreamError(f"{kinds.total()}/{len(tasks)} streams failed: {summary}")


def _failure_kind(failure: BaseException | None) -> str:
    if isinstance(failure, StreamError) and failure.frame is not None:
        data = failure.frame.get("data", {})
        return f"error frame {data.get('code')!r} ({data.get('text')!r})"
    return f"{type(failure).__name__}: {failure}"[:200]


def _machine_busy_seconds() -> float:
    """CPU seconds the machine's cores were busy or stolen by the hypervisor, via psutil."""
    times = psutil.cpu_times()
    busy = ("user", "nice", "system", "irq", "softirq", "steal")
    return float(sum(getattr(times, name, 0.0) for name in busy))


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_FAILURES = (StreamError, ServerError, WebSocketException, TimeoutError, OSError)


async def run(
    servers: Sequence[ServerProcess],
    scenarios: Sequence[Scenario],
    repeat: int,
    compression: Compression,
) -> tuple[dict[str, list[Measurement]], list[Failure]]:
    """Warm every server up, then run each scenario `repeat` times, alternating server order.

    A failed run is recorded and the benchmark goes on, so one broken scenario still leaves
    the others measured.
    """
    failures: list[Failure] = []
    for server in servers:
        for warm in WARMUP:
            for _ in range(2):
                try:
                    await measure(server, warm, 0, compression)
                except _FAILURES as exc:
                    failures.append(Failure(server.spec.name, "warm-up", 0, _describe(exc)))
                    _log(f"warm-up {warm.key} {server.spec.name} FAILED: {_describe(exc)}")
        _log(f"warmed up {server.spec.name}")
    results: dict[str, list[Measurement]] = {scenario.key: [] for scenario in scenarios}
    for repetition in range(1, repeat + 1):
        order = list(servers) if repetition % 2 else list(reversed(servers))
        for scenario in scenarios:
            for server in order:
                await asyncio.sleep(0.5)
                try:
                    result = await measure(server, scenario, repetition, compression)
                except _FAILURES as exc:
                    failure = Failure(server.spec.name, scenario.key, repetition, _describe(exc))
                    failures.append(failure)
                    _log(
                        f"rep {repetition} {scenario.key} {server.spec.name} FAILED: "
                        f"{failure.reason}"
                    )
                    continue
                results[scenario.key].append(result)
                _log(
                    f"rep {repetition} {scenario.key} {server.spec.name}: "
                    f"{result.words_per_s:,.0f} words/s, "
                    f"{result.server_cpu_us_per_word:.1f} us/word, "
                    f"TTFT p99 {result.ttft_p99_ms:.1f} ms, gap p99 {result.gap_p99_ms:.2f} ms, "
                    f"other load {result.other_load_pct:.0f}% ({result.wall_s:.1f} s)"
                )
    return results, failures


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out opening the connections"
    return f"{type(exc).__name__}: {exc}"


def _run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run the client on uvloop when installed (it comes with `uvicorn[standard]`, and the servers
    use it too): it spends less CPU per frame than asyncio's loop, CPU the servers then keep."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _machine() -> dict[str, Any]:
    freq = psutil.cpu_freq()
    return {
        "cpus": os.cpu_count(),
        "cpu_max_mhz": freq.max if freq else None,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["a", "b", "all"], default="all")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (medians reported)")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="deflate",
        help="permessage-deflate offered by the client (default: like browsers)",
    )
    all_specs = default_specs()
    parser.add_argument(
        "--server",
        action="append",
        choices=[spec.name for spec in all_specs],
        help="run only these servers (repeatable; default: all, the first one is the baseline)",
    )
    args = parser.parse_args(argv)
    scenarios = list(SCENARIOS.values()) if args.scenario == "all" else [SCENARIOS[args.scenario]]
    specs: list[ServerSpec] = [s for s in all_specs if not args.server or s.name in args.server]
    _raise_fd_limit(max(s.streams for s in scenarios) * 2 + 256)
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    log_tails: dict[str, str] = {}
    with ExitStack() as stack:
        servers: list[ServerProcess] = []
        try:
            for spec in specs:
                servers.append(stack.enter_context(ServerProcess(spec)))
                _log(f"started {spec.name} at {servers[-1].base_url}")
            results, failures = _run_loop(run(servers, scenarios, args.repeat, args.compression))
        except ServerError as exc:
            _log(f"BENCHMARK FAILED: {exc}")
            return 1
        finally:
            log_tails = {server.spec.name: server.log_tail() for server in servers}

    names = [spec.name for spec in specs]
    machine = _machine()
    print(
        f"\nws_stream benchmark, {date}, {machine['cpus']} CPUs, {machine['platform']}, "
        f"Python {machine['python']}, compression={args.compression}\n"
    )
    report: dict[str, Any] = {
        "date": date,
        "machine": machine,
        "repeat": args.repeat,
        "compression": args.compression,
        "failures": [asdict(failure) for failure in failures],
        "scenarios": {},
    }
    for scenario in scenarios:
        medians, comparisons = summarise(results[scenario.key], names)
        scenario_failures = [f for f in failures if f.scenario == scenario.key]
        print(
            format_scenario(
                scenario.title,
                names,
                medians,
                comparisons,
                scenario.targets,
                args.repeat,
                scenario_failures,
            )
        )
        # Issue 4's targets for Redis mode are relative to memory mode, not to the floor.
        pair = format_pair(
            "rillet (redis)",
            "rillet (memory)",
            medians,
            results[scenario.key],
            REDIS_CPU_RATIO_MAX,
            REDIS_ADDED_GAP_MS_MAX,
        )
        if pair:
            print(pair)
        print()
        report["scenarios"][scenario.key] = {
            "title": scenario.title,
            "streams": scenario.streams,
            "words_per_stream": scenario.words,
            "rate": scenario.rate,
            "targets": asdict(scenario.targets),
            "medians": medians,
            "comparisons": [comparison_json(c, scenario.targets) for c in comparisons],
            "measurements": [asdict(m) for m in results[scenario.key]],
        }
    warmup_failures = [f for f in failures if f.scenario == "warm-up"]
    for failure in warmup_failures:
        print(f"warm-up FAILED on {failure.server}: {failure.reason}")
    if failures:
        for name in sorted({failure.server for failure in failures}):
            print(log_tails.get(name, ""))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        _log(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
