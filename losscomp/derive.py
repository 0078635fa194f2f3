"""Gradients and Hessians of a per-element loss with respect to its targets.

For an elementwise loss l(x_1, ..., x_k) of tensors, the reduced loss L = sum (or mean) of l has

    dL/dt_i     = dl/dt_i                (per element; times 1/N for mean)
    d2L/dt_i dt_j = d2l/dt_i dt_j        (diagonal in the element index)

so the derivatives are elementwise expressions, taken with `sympy.diff` on the lowered form
(`canonical.lower`), where every kink is a Piecewise branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from . import canonical
from .errors import LossDerivationError

_UNPRINTABLE = (sympy.DiracDelta, sympy.Heaviside, sympy.Derivative, sympy.Subs, sympy.Integral)


@dataclass(frozen=True)
class Derivation:
    """The loss of one element and its derivatives with respect to `targets`."""

    value: sympy.Expr                           # l, as written (abs, max, ... kept)
    targets: tuple[sympy.Symbol, ...]
    gradient: tuple[sympy.Expr, ...]            # dl/dt_i
    hessian: tuple[tuple[sympy.Expr, ...], ...]  # d2l/dt_i dt_j (symmetric)


def _tidy(expr: sympy.Expr) -> sympy.Expr:
    """Fold nested Piecewise into one and merge branches that became equal."""
    if expr.has(sympy.Piecewise):
        expr = sympy.piecewise_fold(expr)
    return expr


def _check(expr: sympy.Expr, what: str) -> sympy.Expr:
    bad = expr.atoms(*_UNPRINTABLE)
    if bad or expr.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        found = ", ".join(sorted({type(b).__name__ for b in bad})) or "a non-finite constant"
        raise LossDerivationError(f"the {what} contains {found}, which losscomp cannot emit")
    return expr


def derive(value: sympy.Expr, targets: tuple[sympy.Symbol, ...]) -> Derivation:
    """Gradient and Hessian of the per-element loss `value` with respect to `targets`."""
    smooth = canonical.lower(value)
    first = tuple(_check(_tidy(sympy.diff(smooth, t)), f"derivative by {t}") for t in targets)
    second = []
    for i, gi in enumerate(first):
        row = []
        for j, tj in enumerate(targets):
            if j < i:
                row.append(second[j][i])
            else:
                row.append(_check(_tidy(sympy.diff(canonical.lower(gi), tj)), f"second derivative by {targets[i]}, {tj}"))
        second.append(tuple(row))
    return Derivation(value, tuple(targets), first, tuple(second))
