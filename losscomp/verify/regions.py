"""The region where a function is wrong, written as a condition on the inputs.

A region is a threshold on one feature (`y_pred < 1e-15`, `abs(y - y_pred) > 1`, or both sides:
`x < a or x > b`), optionally split by the value of a discrete argument
(`(y == 1 and p < 1e-15) or (y == 0 and p > 1 - 1e-15)`). It must separate the sampled points
exactly; when no such condition exists there is no region, rather than a wrong one.

Thresholds are first bracketed by the samples, then narrowed by bisection when the caller can
evaluate new points (`refine`), and finally written as the simplest number inside the bracket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .kinks import Feature
from .report import fmt


@dataclass(frozen=True)
class Atom:
    """`feature op threshold`; `bracket` holds the interval the threshold is known to lie in."""

    feature: Feature
    op: str
    threshold: float
    bracket: tuple[float, float]

    @property
    def text(self) -> str:
        return f"{self.feature.text} {self.op} {fmt(self.threshold, 6)}"


@dataclass(frozen=True)
class Clause:
    """A cell (a discrete argument's value, or everything) and the atoms, or-ed, inside it."""

    cell: str                  # '' for everywhere
    atoms: tuple[Atom, ...]    # empty: the whole cell

    @property
    def text(self) -> str:
        atoms = self.atoms
        if len(atoms) == 2 and atoms[0].feature == atoms[1].feature and atoms[1].threshold > 0 and \
                math.isclose(-atoms[0].threshold, atoms[1].threshold, rel_tol=1e-3):
            inner = f"abs({atoms[1].feature.text}) {atoms[1].op} {fmt(atoms[1].threshold, 6)}"
        else:
            inner = " or ".join(a.text for a in atoms)
        if not self.cell:
            return inner
        if not self.atoms:
            return self.cell
        return f"{self.cell} and {inner}" if len(self.atoms) == 1 else f"{self.cell} and ({inner})"


@dataclass(frozen=True)
class Region:
    clauses: tuple[Clause, ...]

    @property
    def text(self) -> str:
        if len(self.clauses) == 1:
            return self.clauses[0].text
        return " or ".join(f"({c.text})" for c in self.clauses)

    def to_dict(self) -> dict:
        return {"condition": self.text,
                "clauses": [{"cell": c.cell, "atoms": [{"feature": a.feature.text, "op": a.op,
                                                        "threshold": a.threshold, "bracket": list(a.bracket)}
                                                       for a in c.atoms]} for c in self.clauses]}


@dataclass
class FeatureTable:
    """Feature values per unit, and the cells of the discrete arguments."""

    features: list[tuple[Feature, np.ndarray]]
    cells: list[tuple[str, np.ndarray]]


# -- simple numbers -------------------------------------------------------------------------------

def simplest(lo: float, hi: float, near: str = "high") -> float:
    """The number with the fewest significant digits in [lo, hi]: 0, a power of ten, 1 - 10^-k, then
    more digits; among equally simple ones the one nearest the `near` end ('low' or 'high')."""
    if lo > hi:
        lo, hi = hi, lo
    if lo <= 0 <= hi:
        return 0.0
    if hi < 0:
        return -simplest(-hi, -lo, "low" if near == "high" else "high")
    for family in ([10.0 ** k for k in range(-323, 309)], [1 - 10.0 ** -k for k in range(1, 17)]):
        inside = [c for c in family if lo <= c <= hi]
        if inside:
            return min(inside) if near == "low" else max(inside)
    for digits in range(1, 18):
        exponent = math.floor(math.log10(hi))
        step = 10.0 ** (exponent - digits + 1)
        candidate = math.ceil(lo / step) * step
        candidate = float(f"{candidate:.{digits}g}")
        if lo <= candidate <= hi:
            return candidate
    return lo


# -- one feature ----------------------------------------------------------------------------------

def _one_feature(feature: Feature, values: np.ndarray, bad: np.ndarray) -> tuple[Atom, ...] | None:
    """Atoms on one feature that separate `bad` from the rest exactly, or None."""
    if not np.isfinite(values).all():
        return None
    b, g = values[bad], values[~bad]
    if b.min() > g.max():
        return (_atom(feature, ">", g.max(), b.min()),)
    if b.max() < g.min():
        return (_atom(feature, "<", b.max(), g.min()),)
    order = np.argsort(values, kind="stable")
    pattern = bad[order]
    good_positions = np.flatnonzero(~pattern)
    first, last = good_positions[0], good_positions[-1]
    if first == 0 or last == len(pattern) - 1 or not (~pattern[first:last + 1]).all():
        return None
    v = values[order]
    if v[first - 1] == v[first] or v[last] == v[last + 1]:
        return None
    low = _atom(feature, "<", v[first - 1], v[first])
    high = _atom(feature, ">", v[last], v[last + 1])
    return (low, high)


def _atom(feature: Feature, op: str, lo: float, hi: float) -> Atom:
    """'<': bad values <= lo < good values from hi on; '>': good <= lo < bad from hi on."""
    t = simplest(lo, hi, "low" if op == "<" else "high")   # claim no more than the bad points show
    if op == "<":
        return Atom(feature, "<" if t > lo else "<=", t, (float(lo), float(hi)))
    return Atom(feature, ">" if t < hi else ">=", t, (float(lo), float(hi)))


def explain(bad: np.ndarray, within: np.ndarray, table: FeatureTable) -> Region | None:
    """A condition true exactly on the `bad` units among the units `within`."""
    bad = bad & within
    if not bad.any() or within.sum() < 2:
        return None
    atoms = _explain_cell(bad, within, table)
    if atoms is not None:
        return Region((Clause("", atoms),)) if atoms else None
    return _explain_by_cells(bad, within, table)


def _explain_cell(bad, within, table) -> tuple[Atom, ...] | None:
    m = bad[within]
    if m.all():
        return ()
    for feature, values in table.features:
        atoms = _one_feature(feature, values[within], m)
        if atoms is not None:
            return atoms
    return None


def _explain_by_cells(bad, within, table) -> Region | None:
    if not table.cells:
        return None
    clauses = []
    for text, mask in table.cells:
        inside = within & mask
        if not (bad & inside).any():
            continue
        atoms = _explain_cell(bad, inside, table)
        if atoms is None:
            return None
        clauses.append(Clause(text, atoms))
    return Region(tuple(clauses)) if clauses else None


# -- narrowing a threshold ------------------------------------------------------------------------

Probe = Callable[[str, np.ndarray, int], np.ndarray]   # (argument, values, unit) -> bad? per value


def refine(region: Region, units: np.ndarray, bad: np.ndarray, table: FeatureTable, probe: Probe,
           rounds: int = 3, points: int = 33) -> Region:
    """Bisect each threshold on a single argument: move that argument of one unit across the bracket."""
    clauses = []
    for clause in region.clauses:
        atoms = []
        for atom in clause.atoms:
            atoms.append(_refine_atom(atom, clause, units, bad, table, probe, rounds, points))
        clauses.append(Clause(clause.cell, tuple(atoms)))
    return Region(tuple(clauses))


def _refine_atom(atom: Atom, clause: Clause, units, bad, table, probe, rounds, points) -> Atom:
    lever = atom.feature.lever
    lo, hi = atom.bracket
    if lever is None or not (lo < hi):
        return atom
    name, c = lever
    values = dict((f.text, v) for f, v in table.features)[atom.feature.text]
    arguments = dict((f.argument, v) for f, v in table.features if f.argument)
    if name not in arguments:
        return atom
    cell = dict(table.cells).get(clause.cell, np.ones_like(bad)) if clause.cell else np.ones_like(bad)
    side = bad & cell & ((values <= lo) if atom.op.startswith("<") else (values >= hi))
    candidates = np.flatnonzero(side)
    if not len(candidates):
        return atom
    unit = int(candidates[np.argmin(np.abs(values[candidates] - (lo if atom.op.startswith("<") else hi)))])
    for _ in range(rounds):
        if lo > 0 and hi / lo > 10:
            grid = np.geomspace(lo, hi, points)
        else:
            grid = np.linspace(lo, hi, points)
        # move the argument so that the feature takes the grid values at this unit
        moved = arguments[name][unit] + (grid - values[unit]) / c
        try:
            wrong = np.asarray(probe(name, moved, unit), dtype=bool)
        except Exception:  # noqa: BLE001 - narrowing is a refinement; keep the bracket we have
            return atom
        if atom.op.startswith("<"):
            # wrong below the threshold: the last wrong grid point and the first right one after it
            right = np.flatnonzero(~wrong)
            if not len(right) or right[0] == 0:
                break
            lo, hi = grid[right[0] - 1], grid[right[0]]
        else:
            right = np.flatnonzero(~wrong)
            if not len(right) or right[-1] == len(grid) - 1:
                break
            lo, hi = grid[right[-1]], grid[right[-1] + 1]
        if not lo < hi:
            break
    return _atom(atom.feature, "<" if atom.op.startswith("<") else ">", lo, hi)


def single_argument(region: Region) -> set[str]:
    """The arguments the region's thresholds are on, when every threshold is on a lone argument."""
    names = {a.feature.argument for c in region.clauses for a in c.atoms}
    return names if None not in names else set()


def all_atoms(region: Region) -> Sequence[Atom]:
    return [a for c in region.clauses for a in c.atoms]
