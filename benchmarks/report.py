"""Summaries and the printed tables: medians over repetitions, ratios to the baseline, targets.

`Measurement` is one scenario run against one server. `summarise` takes every repetition of a
scenario, reduces each server's metrics to their medians and compares every server with the
baseline (the first row, the transport floor) on the three targeted ratios; `format_scenario`
renders that as a plain-text table that can be pasted into a README as is.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Targets:
    """Limits a server must stay within, relative to the baseline; `None` means no target."""

    cpu_ratio_max: float | None = 1.0
    added_gap_p99_ms_max: float | None = 5.0
    ttft_p99_ratio_max: float | None = None


@dataclass(frozen=True)
class Measurement:
    """One scenario run against one server."""

    server: str
    repetition: int
    streams: int
    words: int
    wall_s: float
    words_per_s: float
    server_cpu_us_per_word: float
    client_cpu_us_per_word: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    gap_p50_ms: float
    gap_p99_ms: float
    frames: int
    words_per_frame: float
    other_load_pct: float
    """CPU used by other processes during the window, in % of all cores (the machine is shared)."""
    redis_commands_per_kword: float = math.nan
    """Commands the row's private Redis processed per 1,000 words (with those inside scripts)."""
    redis_scripts_per_kword: float = math.nan
    """Script calls (`EVALSHA`) per 1,000 words: Rillet's round trips for appends and leases."""
    redis_cpu_us_per_word: float = math.nan
    """CPU of the Redis process per word; not part of `server_cpu_us_per_word`."""


@dataclass(frozen=True)
class Failure:
    """A scenario run (or warm-up) that did not complete cleanly against one server."""

    server: str
    scenario: str
    repetition: int
    reason: str


METRICS = [f.name for f in fields(Measurement) if f.name not in ("server", "repetition")]


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Comparison:
    """One server against the baseline, from the medians and per repetition."""

    server: str
    cpu_ratio: float
    added_gap_p99_ms: float
    ttft_p99_ratio: float
    cpu_ratio_reps: list[float]
    added_gap_p99_ms_reps: list[float]
    ttft_p99_ratio_reps: list[float]


def _median_row(rows: Sequence[Measurement]) -> dict[str, float]:
    return {name: statistics.median(getattr(row, name) for row in rows) for name in METRICS}


def summarise(
    measurements: Sequence[Measurement], servers: Sequence[str]
) -> tuple[dict[str, dict[str, float]], list[Comparison]]:
    """Median metrics per server, and every non-baseline server compared with `servers[0]`."""
    by_server = {name: [m for m in measurements if m.server == name] for name in servers}
    medians = {name: _median_row(rows) for name, rows in by_server.items() if rows}
    baseline = servers[0]
    if baseline not in medians:
        return medians, []
    base = medians[baseline]
    base_reps = {m.repetition: m for m in by_server[baseline]}
    comparisons = []
    for name in servers[1:]:
        if name not in medians:
            continue
        row = medians[name]
        paired = [
            (base_reps[m.repetition], m) for m in by_server[name] if m.repetition in base_reps
        ]
        comparisons.append(
            Comparison(
                server=name,
                cpu_ratio=row["server_cpu_us_per_word"] / base["server_cpu_us_per_word"],
                added_gap_p99_ms=row["gap_p99_ms"] - base["gap_p99_ms"],
                ttft_p99_ratio=row["ttft_p99_ms"] / base["ttft_p99_ms"],
                cpu_ratio_reps=[
                    m.server_cpu_us_per_word / b.server_cpu_us_per_word for b, m in paired
                ],
                added_gap_p99_ms_reps=[m.gap_p99_ms - b.gap_p99_ms for b, m in paired],
                ttft_p99_ratio_reps=[m.ttft_p99_ms / b.ttft_p99_ms for b, m in paired],
            )
        )
    return medians, comparisons


def _verdict(value: float, limit: float | None) -> str:
    if limit is None:
        return "(no target)"
    return f"target <= {limit:g}: {'pass' if value <= limit else 'MISS'}"


def _reps(values: Sequence[float], fmt: str) -> str:
    return "reps " + ", ".join(format(value, fmt) for value in values)


def format_scenario(
    title: str,
    servers: Sequence[str],
    medians: dict[str, dict[str, float]],
    comparisons: Sequence[Comparison],
    targets: Targets,
    repetitions: int,
    failures: Sequence[Failure] = (),
) -> str:
    """The scenario's table (medians over `repetitions`) and one ratio block per compared server.

    A server whose every repetition failed gets a FAILED row; failed repetitions are listed.
    """
    header = (
        "server",
        "words/s",
        "srv CPU us/word",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "gap p50 ms",
        "gap p99 ms",
        "words/frame",
    )
    rows = [header]
    for name in servers:
        median = medians.get(name)
        failed = sum(1 for failure in failures if failure.server == name)
        if median is None:
            rows.append((name, f"FAILED {failed}/{repetitions}", "", "", "", "", "", ""))
            continue
        rows.append(
            (
                name if not failed else f"{name} ({failed} failed)",
                f"{median['words_per_s']:,.0f}",
                f"{median['server_cpu_us_per_word']:.1f}",
                f"{median['ttft_p50_ms']:.1f}",
                f"{median['ttft_p99_ms']:.1f}",
                f"{median['gap_p50_ms']:.2f}",
                f"{median['gap_p99_ms']:.2f}",
                f"{median['words_per_frame']:.2f}",
            )
        )
    widths = [max(len(row[col]) for row in rows) for col in range(len(header))]
    lines = [title, f"(medians of {repetitions} repetition{'s' if repetitions != 1 else ''})"]
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    client = ", ".join(f"{name} {m['client_cpu_us_per_word']:.1f}" for name, m in medians.items())
    lines.append(f"client CPU us/word (same machine): {client}")
    load = ", ".join(f"{name} {m['other_load_pct']:.0f}%" for name, m in medians.items())
    lines.append(f"other processes' CPU load during the runs (% of all cores): {load}")
    for name, m in medians.items():
        if not math.isnan(m["redis_commands_per_kword"]):
            lines.append(
                f"{name}: Redis commands per 1,000 words {m['redis_commands_per_kword']:.1f} "
                f"(script calls {m['redis_scripts_per_kword']:.1f}), Redis CPU "
                f"{m['redis_cpu_us_per_word']:.1f} us/word (not in srv CPU)"
            )
    for failure in failures:
        lines.append(f"FAILED: {failure.server}, repetition {failure.repetition}: {failure.reason}")
    for comp in comparisons:
        lines.append(f"{comp.server} vs {servers[0]}:")
        lines.append(
            f"  CPU/word ratio     {comp.cpu_ratio:6.2f}   "
            f"{_verdict(comp.cpu_ratio, targets.cpu_ratio_max):26}"
            f"{_reps(comp.cpu_ratio_reps, '.2f')}"
        )
        lines.append(
            f"  added p99 gap ms   {comp.added_gap_p99_ms:6.2f}   "
            f"{_verdict(comp.added_gap_p99_ms, targets.added_gap_p99_ms_max):26}"
            f"{_reps(comp.added_gap_p99_ms_reps, '.2f')}"
        )
        lines.append(
            f"  TTFT p99 ratio     {comp.ttft_p99_ratio:6.2f}   "
            f"{_verdict(comp.ttft_p99_ratio, targets.ttft_p99_ratio_max):26}"
            f"{_reps(comp.ttft_p99_ratio_reps, '.2f')}"
        )
    return "\n".join(lines)


def comparison_json(comp: Comparison, targets: Targets) -> dict[str, Any]:
    """`comp` with a pass/miss (or `None` without a target) for each ratio."""

    def passed(value: float, limit: float | None) -> bool | None:
        return None if limit is None else value <= limit

    return {
        **asdict(comp),
        "cpu_ratio_pass": passed(comp.cpu_ratio, targets.cpu_ratio_max),
        "added_gap_p99_pass": passed(comp.added_gap_p99_ms, targets.added_gap_p99_ms_max),
        "ttft_p99_ratio_pass": passed(comp.ttft_p99_ratio, targets.ttft_p99_ratio_max),
    }


def format_pair(
    name: str,
    base: str,
    medians: dict[str, dict[str, float]],
    measurements: Sequence[Measurement],
    cpu_ratio_max: float,
    added_gap_ms_max: float,
) -> str:
    """`name` against `base` (not the floor): CPU/word ratio and added p99 gap, with targets."""
    if name not in medians or base not in medians:
        return ""
    row, ref = medians[name], medians[base]
    by_rep = {m.repetition: m for m in measurements if m.server == base}
    paired = [
        (by_rep[m.repetition], m)
        for m in measurements
        if m.server == name and m.repetition in by_rep
    ]
    ratio = row["server_cpu_us_per_word"] / ref["server_cpu_us_per_word"]
    gap = row["gap_p99_ms"] - ref["gap_p99_ms"]
    ratio_reps = [m.server_cpu_us_per_word / b.server_cpu_us_per_word for b, m in paired]
    gap_reps = [m.gap_p99_ms - b.gap_p99_ms for b, m in paired]
    return "\n".join(
        [
            f"{name} vs {base}:",
            f"  CPU/word ratio     {ratio:6.2f}   {_verdict(ratio, cpu_ratio_max):26}"
            f"{_reps(ratio_reps, '.2f')}",
            f"  added p99 gap ms   {gap:6.2f}   {_verdict(gap, added_gap_ms_max):26}"
            f"{_reps(gap_reps, '.2f')}",
        ]
    )
