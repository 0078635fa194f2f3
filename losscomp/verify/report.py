"""What `check` and `verify` hand back: a verdict, the evidence behind it, and a diagnosis.

`str(report)` is for people: the verdict, the diagnosis in one line per code, and the few worst
points as a table (never a dump of every point). `report.to_json()` is the same as one JSON object.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import LossError

VERDICTS = ("agrees", "agrees_except_kinks", "differs")
CODES = ("sign_flip", "scale_factor", "constant_offset", "swapped_arguments", "wrong_axis", "unstable",
         "clipped_gradient", "wrong_region")


class CheckInputError(LossError):
    """The function cannot be checked as given: it does not import, takes the wrong arguments, ..."""


def plain_number(x: Any) -> Any:
    """JSON-safe: floats stay floats, inf and nan become strings, arrays become lists."""
    if isinstance(x, dict):
        return {str(k): plain_number(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain_number(v) for v in x]
    if hasattr(x, "tolist") and not isinstance(x, (str, bytes)):
        return plain_number(x.tolist())
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else ("nan" if x != x else ("inf" if x > 0 else "-inf"))
    try:
        return plain_number(float(x))
    except (TypeError, ValueError):
        return str(x)


def fmt(x: Any, digits: int = 4) -> str:
    """A number in few characters: 0.25, -1.5e-07, inf; a short list as [a, b, ...]."""
    if isinstance(x, (list, tuple)):
        items = [fmt(v, digits) for v in x[:4]]
        return "[" + ", ".join(items) + (", ..." if len(x) > 4 else "") + "]"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if v != v:
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    if 0.999 < v < 1 and 1 - v < 1e-4:
        d = 1 - v
        for k in range(1, digits + 1):
            if 1 - float(f"{d:.{k}g}") == v:
                return f"1 - {d:.{k}g}"
        return f"1 - {d:.{digits}g}"
    return f"{v:.{digits}g}"


@dataclass(frozen=True)
class Diagnosis:
    """One way the function differs: `code` from CODES, `detail` (JSON-able), `message` for people."""

    code: str
    detail: dict
    message: str
    part: str = ""

    def to_dict(self) -> dict:
        return {"code": self.code, "detail": plain_number(self.detail), "message": self.message, "part": self.part}


@dataclass(frozen=True)
class Point:
    """One compared point: the inputs of its unit, the function's result and the expected one."""

    inputs: dict
    got: Any
    expected: Any
    abs_error: float
    rel_error: float
    at_kink: bool = False
    origin: str = ""

    def to_dict(self) -> dict:
        return plain_number({"inputs": self.inputs, "got": self.got, "expected": self.expected,
                             "abs_error": self.abs_error, "rel_error": self.rel_error,
                             "at_kink": self.at_kink, "origin": self.origin})


@dataclass
class Comparison:
    """One thing compared (the loss values, the gradient by one target, autodiff of the loss, ...)."""

    name: str
    verdict: str
    points: int
    mismatches: int = 0            # off the kinks
    kink_points: int = 0
    kink_mismatches: int = 0
    excluded: int = 0              # the true value overflows float64: nothing to compare
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    worst: list[Point] = field(default_factory=list)
    diagnosis: list[Diagnosis] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return plain_number({
            "name": self.name, "verdict": self.verdict, "points": self.points, "mismatches": self.mismatches,
            "kink_points": self.kink_points, "kink_mismatches": self.kink_mismatches, "excluded": self.excluded,
            "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
            "worst": [p.to_dict() for p in self.worst], "diagnosis": [d.to_dict() for d in self.diagnosis],
            "notes": self.notes})


def worst_verdict(verdicts) -> str:
    verdicts = list(verdicts)
    return max(verdicts, key=VERDICTS.index) if verdicts else "agrees"


@dataclass
class Report:
    """The result of `losscomp.check`."""

    function: str
    against: str
    kind: str
    framework: str
    call: str
    targets: tuple[str, ...]
    sample: dict
    comparisons: list[Comparison]
    tolerance: dict
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return worst_verdict(c.verdict for c in self.comparisons)

    @property
    def ok(self) -> bool:
        """True for 'agrees' and 'agrees_except_kinks'."""
        return self.verdict != "differs"

    @property
    def diagnosis(self) -> list[Diagnosis]:
        """Every diagnosis, in order, one per code (the first comparison that found it)."""
        seen, out = set(), []
        for c in self.comparisons:
            for d in c.diagnosis:
                if d.code not in seen:
                    seen.add(d.code)
                    out.append(d)
        return out

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnosis]

    def _main(self) -> Comparison | None:
        ranked = sorted(self.comparisons, key=lambda c: (-VERDICTS.index(c.verdict), -c.max_rel_error))
        return ranked[0] if ranked else None

    @property
    def max_abs_error(self) -> float:
        return max((c.max_abs_error for c in self.comparisons), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel_error for c in self.comparisons), default=0.0)

    @property
    def worst_input(self) -> dict | None:
        main = self._main()
        return main.worst[0].inputs if main and main.worst else None

    def to_dict(self) -> dict:
        return plain_number({
            "verdict": self.verdict, "function": self.function, "against": self.against, "kind": self.kind,
            "framework": self.framework, "call": self.call, "targets": list(self.targets),
            "diagnosis": [d.to_dict() for d in self.diagnosis], "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error, "worst_input": self.worst_input, "sample": self.sample,
            "tolerance": self.tolerance, "comparisons": [c.to_dict() for c in self.comparisons],
            "notes": self.notes})

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def __str__(self) -> str:
        verdict = {"agrees": "AGREES", "agrees_except_kinks": "AGREES EXCEPT AT KINKS",
                   "differs": "DIFFERS"}[self.verdict]
        lines = [f"check {self.function} against {self.against} ({self.kind}, {self.framework}): {verdict}",
                 f"  called as {self.call} on {self.sample.get('text', '')}",
                 f"  tolerance: rtol {fmt(self.tolerance['rtol'])}, atol {fmt(self.tolerance['atol'])} x typical size"]
        if self.diagnosis:
            lines.append("  diagnosis:")
            for d in self.diagnosis:
                lines.append(f"    {d.code:<18} {d.message}")
        elif self.verdict == "agrees_except_kinks":
            lines.append("  the differences lie on kinks only: a different subgradient convention, not a bug "
                         "(losscomp follows PyTorch's)")
        for c in self.comparisons:
            lines.append("")
            lines.extend(_comparison_lines(c))
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


def _comparison_lines(c: Comparison) -> list[str]:
    head = f"  {c.name}: {c.verdict.replace('_', ' ')}"
    counts = [f"{c.points:,} point{'s' if c.points != 1 else ''}"]
    if c.mismatches:
        counts.append(f"{c.mismatches:,} differ")
    if c.kink_points:
        counts.append(f"{c.kink_mismatches:,} of {c.kink_points:,} kink points differ")
    if c.excluded:
        counts.append(f"{c.excluded:,} beyond float64")
    lines = [head + f" ({', '.join(counts)}); max abs error {fmt(c.max_abs_error, 3)}, "
             f"max rel error {fmt(c.max_rel_error, 3)}"]
    for note in c.notes:
        lines.append(f"    note: {note}")
    if c.worst and c.verdict != "agrees":
        names = list(c.worst[0].inputs)
        header = [*names, "got", "expected", "rel err", ""]
        rows = [[fmt(p.inputs[n]) for n in names] + [fmt(p.got), fmt(p.expected), fmt(p.rel_error, 2),
                                                       "kink" if p.at_kink else p.origin] for p in c.worst]
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        lines.append("    " + "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
        for r in rows:
            lines.append("    " + "  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
    return lines


@dataclass
class Row:
    """One line of the `verify` table."""

    backend: str
    quantity: str
    reference: str
    points: int
    max_abs_error: float
    max_rel_error: float
    status: str                 # 'ok', 'ok (kinks)', 'FAIL', 'skipped'
    note: str = ""

    def to_dict(self) -> dict:
        return plain_number(self.__dict__)


@dataclass
class VerifyReport:
    """The result of `losscomp verify`: one row per (backend, quantity, reference)."""

    loss: str
    targets: tuple[str, ...]
    reduction: str
    sample: dict
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status != "FAIL" for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.status == "FAIL"]

    def to_dict(self) -> dict:
        return plain_number({"loss": self.loss, "targets": list(self.targets), "reduction": self.reduction,
                             "ok": self.ok, "sample": self.sample, "rows": [r.to_dict() for r in self.rows],
                             "notes": self.notes})

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def __str__(self) -> str:
        lines = [f"verify {self.loss} (with respect to {', '.join(self.targets)}, reduction {self.reduction}) "
                 f"on {self.sample.get('text', '')}"]
        header = ["backend", "quantity", "reference", "points", "max abs err", "max rel err", "result"]
        rows = [[r.backend, r.quantity, r.reference, str(r.points), fmt(r.max_abs_error, 2),
                 fmt(r.max_rel_error, 2), r.status + (f"  {r.note}" if r.note else "")] for r in self.rows]
        widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header) - 1)]
        for r in [header, *rows]:
            lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1])
        lines.append(f"{len(self.failures)} failure(s)" if not self.ok else "all checks passed")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)
