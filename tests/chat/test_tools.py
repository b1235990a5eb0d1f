"""Tests for the built-in tools and the tool registry."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

import pytest
from pydantic_ai import ModelRetry, Tool

from rillet.chat.tools import (
    ToolRegistry,
    ToolSpec,
    builtin_tools,
    calculator,
    current_time,
    default_registry,
)


def test_builtin_tools_are_read_only_and_low_risk() -> None:
    specs = {spec.name: spec for spec in builtin_tools()}
    assert set(specs) >= {"current_time", "calculator"}
    for spec in specs.values():
        assert isinstance(spec.tool, Tool)
        assert spec.access == "read"
        assert spec.risk == "low"


def test_tool_descriptions_come_from_docstrings() -> None:
    specs = {spec.name: spec for spec in builtin_tools()}
    assert "current date and time" in (specs["current_time"].tool.description or "")
    assert "arithmetic" in (specs["calculator"].tool.description or "")


async def test_current_time_defaults_to_utc() -> None:
    value = datetime.fromisoformat(await current_time())
    assert value.utcoffset() == timedelta(0)
    assert abs(value - datetime.now(UTC)) < timedelta(minutes=1)


async def test_current_time_in_a_named_zone() -> None:
    value = datetime.fromisoformat(await current_time("Asia/Kolkata"))
    assert value.utcoffset() == timedelta(hours=5, minutes=30)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", ""])
async def test_current_time_with_a_bad_zone_asks_the_model_to_retry(zone: str) -> None:
    with pytest.raises(ModelRetry, match="IANA"):
        await current_time(zone)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 + 2", "4"),
        ("(2 + 3) * 4", "20"),
        ("7 / 2", "3.5"),
        ("7 // 2", "3"),
        ("7 % 3", "1"),
        ("2 ** 10", "1024"),
        ("-3 + +5", "2"),
        ("0.1 + 0.2", "0.3"),
        ("sqrt(16)", "4"),
        ("log(e)", "1"),
        ("log(8, 2)", "3"),
        ("round(2.567, 2)", "2.57"),
        ("2 ** -1", "0.5"),
        ("abs(-7)", "7"),
    ],
)
async def test_calculator_evaluates_arithmetic(expression: str, expected: str) -> None:
    assert await calculator(expression) == expected


async def test_calculator_knows_pi_and_trigonometry() -> None:
    assert float(await calculator("sin(pi / 2)")) == pytest.approx(1.0)
    assert float(await calculator("cos(0) + pi")) == pytest.approx(1 + math.pi)


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "(1).__class__",
        "x + 1",
        "open('/etc/passwd')",
        "'a' * 3",
        "[1, 2]",
        "1 if 1 else 2",
        "lambda: 1",
        "True + 1",
        "1j * 2",
        "sqrt(x=4)",
        "2 < 3",
        "2 +",
        "",
    ],
)
async def test_calculator_refuses_everything_but_arithmetic(expression: str) -> None:
    with pytest.raises(ModelRetry):
        await calculator(expression)


@pytest.mark.parametrize(
    "expression",
    [
        "9**9**9",
        "2 ** 100000",
        "10 ** 10 ** 10",
        "(10 ** 1000) ** 10",
        "round(5, -10**9)",
        "exp(1000)",
    ],
)
async def test_calculator_refuses_huge_results_quickly(expression: str) -> None:
    started = time.monotonic()
    with pytest.raises(ModelRetry):
        await calculator(expression)
    assert time.monotonic() - started < 5  # a CPU bomb would take far longer


async def test_calculator_reports_math_errors_to_the_model() -> None:
    with pytest.raises(ModelRetry, match="division by zero"):
        await calculator("1 / 0")
    with pytest.raises(ModelRetry):
        await calculator("sqrt(-1)")
    with pytest.raises(ModelRetry, match="longer than"):
        await calculator("1+" * 300 + "1")


def test_registry_filters_read_only_tools_and_rejects_duplicates() -> None:
    async def delete_everything() -> str:
        """Delete everything."""
        return "done"

    registry = default_registry()
    registry.register(ToolSpec(tool=Tool(delete_everything), access="write", risk="high"))
    assert "delete_everything" in registry
    assert len(registry) == 3
    assert [tool.name for tool in registry.tools(read_only=True)] == ["current_time", "calculator"]
    assert len(registry.tools()) == 3
    with pytest.raises(ValueError, match="already registered"):
        registry.register(builtin_tools()[0])
    assert ToolRegistry().get("calculator") is None
