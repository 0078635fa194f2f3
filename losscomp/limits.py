"""The limits that keep compiling bounded: every one is a clear `LossLimitError` when crossed, never a
hang, a `RecursionError` or a `MemoryError`. Each is a module attribute; raise one for a run with
e.g. `losscomp.limits.MAX_DEPTH = 200`.
"""

from __future__ import annotations

import time

MAX_LITERAL_CHARS = 400          # characters of one number literal
MAX_DEPTH = 100                  # nesting of the source (parentheses, calls, if/then/else, powers)
MAX_NODES = 20_000               # distinct subexpressions of a loss or of a derivative (after inlining)
MAX_EXPRESSION_DEPTH = 200       # nesting of a loss after its calls and bindings are inlined
DERIVATION_SECONDS = 60.0        # wall-clock budget of one compile (parse, derive, rewrite)

_NAMES = ("MAX_LITERAL_CHARS", "MAX_DEPTH", "MAX_NODES", "MAX_EXPRESSION_DEPTH",
          "DERIVATION_SECONDS")


def describe() -> list[tuple[str, object]]:
    """(name, current value) of every limit, for documentation and `losscomp --limits`."""
    return [(name, globals()[name]) for name in _NAMES]


class Budget:
    """The time budget of one compile; `check(stage)` raises once it is spent."""

    def __init__(self, seconds: float | None = None):
        self.seconds = DERIVATION_SECONDS if seconds is None else seconds
        self.start = time.monotonic()

    def check(self, stage: str) -> None:
        from .errors import LossLimitError

        elapsed = time.monotonic() - self.start
        if elapsed > self.seconds:
            raise LossLimitError(f"compiling took more than {self.seconds:g} s (at {stage}); the formula is too "
                                 f"large to derive in the time budget — simplify it, or raise "
                                 f"losscomp.limits.DERIVATION_SECONDS")


def node_count(expr, stop: int | None = None) -> int:
    """Distinct subexpressions of a SymPy expression (a DAG count, linear however much is shared);
    counting stops early past `stop`."""
    seen = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if stop is not None and len(seen) > stop:
            break
        stack.extend(getattr(node, "args", ()))
    return len(seen)


def depth(expr) -> int:
    """Nesting depth of a SymPy expression, without recursion."""
    best = 0
    stack = [(expr, 1)]
    seen = {}
    while stack:
        node, level = stack.pop()
        if seen.get(node, 0) >= level:
            continue
        seen[node] = level
        best = max(best, level)
        stack.extend((arg, level + 1) for arg in getattr(node, "args", ()))
    return best
