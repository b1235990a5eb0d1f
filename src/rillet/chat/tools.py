"""The tool registry: every tool a model may call, with Rillet's metadata beside it.

A tool is a pydantic-ai `Tool` wrapped in a `ToolSpec` that says whether it only reads
(`access="read"`, offered in `ask` mode) or changes something (`access="write"`, `agent` mode
only), and how risky it is (`risk="high"` needs a human decision). `builtin_tools` gives the tools
that ship with Rillet (`current_time`, `calculator`); `ToolRegistry` is the lookup the agent loop
uses, and the place where tools registered from the configuration and MCP servers join the
built-ins.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic_ai import ModelRetry, Tool

ToolAccess = Literal["read", "write"]
ToolRisk = Literal["low", "medium", "high"]


@dataclass(frozen=True)
class ToolSpec:
    """A tool and what Rillet needs to know before running it."""

    tool: Tool[Any]
    access: ToolAccess
    risk: ToolRisk

    @property
    def name(self) -> str:
        return self.tool.name


class ToolRegistry:
    """The tools known to one Rillet process, by name."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ToolSpec) -> None:
        """Add a tool; a second tool with the same name is a configuration mistake."""
        if spec.name in self._specs:
            raise ValueError(f"a tool named {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def get(self, name: str) -> ToolSpec | None:
        return self._specs.get(name)

    def specs(self, *, read_only: bool = False) -> list[ToolSpec]:
        """The registered tools, only those with `access="read"` when `read_only`."""
        return [spec for spec in self._specs.values() if not read_only or spec.access == "read"]

    def tools(self, *, read_only: bool = False) -> list[Tool[Any]]:
        """The pydantic-ai tools to offer a model (`read_only` for `ask` mode)."""
        return [spec.tool for spec in self.specs(read_only=read_only)]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def builtin_tools() -> list[ToolSpec]:
    """The tools that ship with Rillet."""
    return [
        ToolSpec(tool=Tool(current_time, takes_ctx=False), access="read", risk="low"),
        ToolSpec(tool=Tool(calculator, takes_ctx=False), access="read", risk="low"),
    ]


def default_registry() -> ToolRegistry:
    """A registry holding the built-in tools."""
    return ToolRegistry(builtin_tools())


async def current_time(timezone: str = "UTC") -> str:
    """Get the current date and time.

    Args:
        timezone: An IANA time zone name such as `UTC`, `Europe/Paris` or `America/New_York`.

    Returns:
        The current time in ISO-8601 format, with its UTC offset.
    """
    name = timezone.strip()
    if name.upper() in ("UTC", "Z", "GMT"):
        return datetime.now(UTC).isoformat(timespec="seconds")
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ModelRetry(
            f"unknown time zone {timezone!r}; use an IANA name such as 'UTC', "
            "'Europe/Paris' or 'America/New_York'"
        ) from exc
    return datetime.now(zone).isoformat(timespec="seconds")


async def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression exactly as written.

    Supports numbers, `+ - * / // % **`, parentheses, the functions `sqrt`, `sin`, `cos`, `tan`,
    `asin`, `acos`, `atan`, `exp`, `log` (natural, or `log(x, base)`), `log10`, `log2`, `abs`,
    `round`, `floor`, `ceil`, and the constants `pi` and `e`.

    Args:
        expression: The expression, for example `(2 + 3) * sqrt(16) / 7`.

    Returns:
        The value of the expression.
    """
    return format_number(evaluate_arithmetic(expression))


MAX_EXPRESSION_CHARS = 500
"""Longest expression `calculator` accepts; bounds parsing and recursion."""
MAX_INTEGER_BITS = 4096
"""Largest integer (in bits) an intermediate result may have; stops `9**9**9`-style CPU bombs."""

Number = int | float

_BINARY_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY_OPERATORS: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def evaluate_arithmetic(expression: str) -> Number:
    """Evaluate `expression` over numbers only; anything else raises `ModelRetry`."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ModelRetry(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise ModelRetry(f"not a valid arithmetic expression: {expression!r}") from exc
    try:
        return _evaluate(tree.body)
    except ZeroDivisionError as exc:
        raise ModelRetry("division by zero") from exc
    except OverflowError as exc:
        raise ModelRetry("the result is too large") from exc
    except (ValueError, TypeError) as exc:
        raise ModelRetry(f"cannot evaluate {expression!r}: {exc}") from exc


def format_number(value: Number) -> str:
    """`value` as text: integers exactly, floats to 15 significant digits."""
    if isinstance(value, int):
        return str(value)
    return f"{value:.15g}"


def _evaluate(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ModelRetry(f"only numbers are allowed, not {value!r}")
        return _checked(value)
    if isinstance(node, ast.BinOp):
        binary = _BINARY_OPERATORS.get(type(node.op))
        if binary is None:
            raise ModelRetry(f"operator {type(node.op).__name__} is not allowed")
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(binary(left, right))
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY_OPERATORS.get(type(node.op))
        if unary is None:
            raise ModelRetry(f"operator {type(node.op).__name__} is not allowed")
        return _checked(unary(_evaluate(node.operand)))
    if isinstance(node, ast.Name):
        if node.id not in _CONSTANTS:
            raise ModelRetry(f"unknown name {node.id!r}; the constants are pi and e")
        return _CONSTANTS[node.id]
    if isinstance(node, ast.Call):
        return _call(node)
    raise ModelRetry(f"{type(node).__name__} is not allowed in an arithmetic expression")


def _call(node: ast.Call) -> Number:
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        allowed = ", ".join(_FUNCTIONS)
        raise ModelRetry(f"only these functions can be called: {allowed}")
    if node.keywords or not 1 <= len(node.args) <= 2:
        raise ModelRetry(f"{node.func.id}() takes one or two plain arguments")
    args = [_evaluate(arg) for arg in node.args]
    if node.func.id == "round" and len(args) == 2 and not _is_small_int(args[1]):
        # `round(5, -10**9)` would compute `10**(10**9)`.
        raise ModelRetry("round() takes a whole number of digits between -100 and 100")
    return _checked(_FUNCTIONS[node.func.id](*args))


def _is_small_int(value: Number) -> bool:
    return isinstance(value, int) and -100 <= value <= 100


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse powers whose result would be huge before computing them."""
    if abs(base) <= 1 or exponent <= 0:
        return
    if exponent * math.log2(abs(base)) > MAX_INTEGER_BITS:
        raise ModelRetry("the result is too large")


def _checked(value: object) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelRetry("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INTEGER_BITS:
        raise ModelRetry("the result is too large")
    if isinstance(value, float) and not math.isfinite(value):
        raise ModelRetry("the result is not a finite number")
    return value
