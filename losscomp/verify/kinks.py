"""Where a loss is not smooth, and the quantities a region of the inputs is described by.

A kink is the zero set of a *kink function* g: the argument of abs, sign and relu, the difference of
the arguments of max and min, x - lo and x - hi of clip, and lhs - rhs of every comparison in an
`if`. The canonical form (`losscomp.canonical`) puts exactly these into Piecewise conditions, and the
kink convention says what the derivative is there. `check` lets a hand-written function differ from
the symbolic one only on these sets (a convention), and the samplers put points exactly on them.

Features are the same expressions written the way a person reads a condition (`abs(y - y_pred)`
rather than `delta - abs(y - y_pred)`), plus the arguments and their differences; a region where a
function is wrong is described as a threshold on one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import sympy
from sympy.core.relational import Relational

from .. import display
from .. import functions as _functions
from .evaluate import FloatKit, Model, UnknownSymbol

CONTINUOUS = ("real", "positive", "nonnegative", "unit")
DISCRETE = ("binary", "sign")
KINK_RTOL = 1e-12  # |g| <= KINK_RTOL * (1 + |inputs|) counts as on the kink


@dataclass(frozen=True)
class Feature:
    """A scalar function of the inputs, evaluated per element (or per sample when it holds a reduction)."""

    expr: sympy.Expr
    text: str
    argument: str | None = None   # set when the feature is one argument itself
    lever: tuple[str, float] | None = None  # (argument, c): the feature is c * argument + the rest


def _key(expr: sympy.Expr) -> sympy.Expr:
    e = sympy.expand(expr)
    return -e if e.could_extract_minus_sign() else e


def _sources(loss) -> list[sympy.Expr]:
    d = loss.derivation
    exprs = [d.value, *(r.operand for r in getattr(loss.definition, "reductions", ()))]
    if getattr(d, "elementwise", True):
        exprs += [g for g in d.gradient if isinstance(g, sympy.Basic)]
    return exprs


def _parts(loss):
    """(kink function, readable feature) pairs, in the order they appear."""
    out = []
    arguments = {a.symbol for a in loss.definition.arguments} | {r.symbol for r in getattr(
        loss.definition, "reductions", ())}
    for expr in _sources(loss):
        for node in sympy.preorder_traversal(expr):
            if isinstance(node, sympy.Piecewise):
                for _, cond in node.args:
                    for rel in ([cond] if isinstance(cond, Relational) else list(cond.atoms(Relational))):
                        lhs, rhs = rel.args
                        if not (rhs.free_symbols & arguments):
                            shown = lhs
                        elif not (lhs.free_symbols & arguments):
                            shown = rhs
                        else:
                            shown = lhs - rhs
                        out.append((lhs - rhs, shown))
            elif isinstance(node, (sympy.Abs, sympy.sign, _functions.relu, sympy.Heaviside)):
                out.append((node.args[0], node.args[0]))
            elif isinstance(node, (sympy.Max, sympy.Min)):
                args = node.args
                for i in range(len(args)):
                    for j in range(i + 1, len(args)):
                        difference = _shorter(args[i] - args[j])
                        out.append((difference, difference))
            elif isinstance(node, _functions.clip):
                x, lo, hi = node.args
                out += [(x - lo, x), (x - hi, x)]
    return [(g, shown) for g, shown in out if g.free_symbols & arguments]


def _shorter(d: sympy.Expr) -> sympy.Expr:
    expanded = sympy.expand(d)
    return expanded if sympy.count_ops(expanded) <= sympy.count_ops(d) else d


def kink_functions(loss) -> tuple[sympy.Expr, ...]:
    """The distinct kink functions of a compiled loss (its value, and its gradient's conditions)."""
    seen, out = set(), []
    for g, _ in _parts(loss):
        k = _key(g)
        if k not in seen:
            seen.add(k)
            out.append(g)
    return tuple(out)


def features(loss) -> tuple[Feature, ...]:
    """Arguments, their differences and the readable kink quantities, without repeats."""
    args = [a for a in loss.definition.arguments if a.domain in CONTINUOUS + ("count",)]
    candidates: list[Feature] = [Feature(a.symbol, a.name, a.name) for a in args]
    for _, shown in _parts(loss):
        candidates.append(Feature(shown, display.plain(shown)))
    for i, a in enumerate(args):
        for b in args[i + 1:]:
            candidates.append(Feature(a.symbol - b.symbol, f"{a.name} - {b.name}"))
    targets = set(loss.targets)
    ordered = sorted(args, key=lambda a: a.name not in targets)
    seen, out = set(), []
    for f in candidates:
        k = _key(f.expr)
        if k not in seen and not k.is_number:
            seen.add(k)
            out.append(Feature(f.expr, f.text, f.argument, _lever(f.expr, ordered)))
    return tuple(out)


def _lever(expr: sympy.Expr, arguments) -> tuple[str, float] | None:
    """An argument the feature moves with linearly (feature = c * argument + rest), targets first."""
    for a in arguments:
        if a.symbol not in expr.free_symbols:
            continue
        c = sympy.diff(expr, a.symbol)
        if c.is_number and c != 0:
            return a.name, float(c)
    return None


def at_kinks(loss, inputs: Mapping[str, np.ndarray], model: Model | None = None,
             rtol: float = KINK_RTOL) -> np.ndarray:
    """A boolean array (the loss's context shape): True within `rtol` (relative) of a kink; the
    default is rounding error, a larger one marks the points a difference stencil would straddle."""
    model = model or Model(loss.definition, _parameters(loss))
    shape = model.context_shape(inputs)
    scale = np.ones(shape)
    for a in loss.definition.arguments:
        if a.domain != "index":
            scale = np.maximum(scale, 1 + np.abs(np.broadcast_to(np.asarray(inputs[a.name], float), shape)))
    mask = np.zeros(shape, dtype=bool)
    kit = FloatKit()
    env = model.environment(inputs, kit)
    with np.errstate(all="ignore"):
        for g in kink_functions(loss):
            try:
                value = np.asarray(model.evaluate(g, inputs, kit, env), dtype=float)
            except (UnknownSymbol, NotImplementedError):
                continue
            mask |= np.abs(np.broadcast_to(value, shape)) <= rtol * scale
    return mask


def _parameters(loss) -> dict[str, float]:
    return {p.name: float(p.default) for p in loss.definition.parameters}


# -- points exactly on a kink ---------------------------------------------------------------------

_GRIDS = {
    "real": np.arange(-24, 25) / 8.0,
    "positive": np.arange(1, 33) / 8.0,
    "nonnegative": np.arange(0, 33) / 8.0,
    "unit": np.arange(1, 16) / 16.0,
    "binary": np.array([0.0, 1.0]),
    "sign": np.array([-1.0, 1.0]),
    "count": np.arange(0, 6, dtype=float),
}


def _in_domain(x: np.ndarray, domain: str) -> np.ndarray:
    ok = np.isfinite(x)
    if domain == "positive":
        ok &= x > 0
    elif domain == "nonnegative":
        ok &= x >= 0
    elif domain == "unit":
        ok &= (x > 0) & (x < 1)
    return ok


def kink_points(loss, rng: np.random.Generator, per_solution: int = 16) -> dict[str, np.ndarray]:
    """Flat arrays, one per argument, of elements that lie exactly on a kink (elementwise kinks only).

    Each kink function is solved for a continuous argument (the targets first); the other arguments
    come from a grid of multiples of 1/8, so that float64 evaluates g to exactly 0 wherever it can.
    Each point also gets two neighbours 2^-30 to either side, which are not on the kink.
    """
    definition = loss.definition
    by_symbol = {a.symbol: a for a in definition.arguments}
    reductions = {r.symbol for r in getattr(definition, "reductions", ())}
    targets = list(loss.targets)
    model = Model(definition, _parameters(loss))
    columns: dict[str, list[np.ndarray]] = {a.name: [] for a in definition.arguments}
    if any(a.domain not in _GRIDS for a in definition.arguments):
        return {name: np.zeros(0) for name in columns}
    for g in kink_functions(loss):
        if g.free_symbols & reductions or sympy.count_ops(g) > 40:
            continue
        unknowns = sorted((s for s in g.free_symbols if s in by_symbol and by_symbol[s].domain in CONTINUOUS),
                          key=lambda s: (by_symbol[s].name not in targets, by_symbol[s].name))
        for unknown in unknowns[:1]:
            try:
                solutions = sympy.solve(g, unknown)
            except (NotImplementedError, ValueError, TypeError):  # pragma: no cover - SymPy gives up
                continue
            for s in solutions[:4]:
                values = {a.name: rng.choice(_GRIDS[a.domain], size=per_solution) for a in definition.arguments}
                with np.errstate(all="ignore"):
                    try:
                        x = np.broadcast_to(np.asarray(model.evaluate(s, values), dtype=float), (per_solution,))
                    except (UnknownSymbol, NotImplementedError, TypeError):
                        continue
                argument = by_symbol[unknown]
                for shift in (0.0, 2.0 ** -30, -(2.0 ** -30)):
                    moved = x + shift
                    ok = _in_domain(moved, argument.domain)
                    if not ok.any():
                        continue
                    for name in columns:
                        columns[name].append(moved[ok] if name == argument.name else values[name][ok])
    return {name: (np.concatenate(parts) if parts else np.zeros(0)) for name, parts in columns.items()}
