"""Normal form for differentiation: non-smooth functions become Piecewise under one kink convention.

The convention is PyTorch's, so `grad` agrees with `torch.autograd` everywhere, kinks included:

    abs'(0) = 0              abs(x)  = x if x > 0, -x if x < 0, 0 at 0
    sign' = 0                sign(x) = 1, -1, 0
    relu'(0) = 0             relu(x) = x if x > 0, else 0
    max(a, b) at a tie       (a + b) / 2, so the gradient splits 0.5 / 0.5 (min likewise)
    clip(x, lo, hi)          x on [lo, hi]: the gradient passes at the bounds
    if c then a else b       the branch `c` selects, at its boundary too
    sqrt'(0), norm'(0)       0 (a subgradient), not an infinity

Differentiating a Piecewise differentiates each branch, so no DiracDelta or Heaviside ever appears.
An n-argument max folds pairwise in SymPy's argument order. Conditions keep abs/max/min/sign, which
every backend prints natively; only values are lowered.
"""

from __future__ import annotations

import sympy
from sympy import Piecewise

from .functions import clip, relu, root

KINK_CONVENTION = (
    "PyTorch's convention: abs'(0) = sign'(x) = relu'(0) = 0; max/min split the gradient 0.5/0.5 at a tie; "
    "clip passes the gradient at its bounds; 'if c then a else b' differentiates the branch c selects; "
    "sqrt and norm have the subgradient 0 at 0"
)


def _difference(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    """a - b in its shorter form, so max(tau*e, (tau-1)*e) compares on `e > 0`."""
    d = a - b
    expanded = sympy.expand(d)
    return expanded if sympy.count_ops(expanded) <= sympy.count_ops(d) else d


def _max2(a, b):
    d = _difference(a, b)
    return Piecewise((a, d > 0), (b, d < 0), ((a + b) / 2, True))


def _min2(a, b):
    d = _difference(a, b)
    return Piecewise((a, d < 0), (b, d > 0), ((a + b) / 2, True))


def _fold(pair, args):
    result = args[0]
    for arg in args[1:]:
        result = pair(result, arg)
    return result


def _lower_node(expr: sympy.Basic) -> sympy.Basic:
    if isinstance(expr, sympy.Abs):
        x = expr.args[0]
        return Piecewise((x, x > 0), (-x, x < 0), (0, True))
    if isinstance(expr, sympy.sign):
        x = expr.args[0]
        return Piecewise((1, x > 0), (-1, x < 0), (0, True))
    if isinstance(expr, relu):
        x = expr.args[0]
        return Piecewise((x, x > 0), (0, True))
    if isinstance(expr, clip):
        x, lo, hi = expr.args
        return Piecewise((lo, x < lo), (hi, x > hi), (x, True))
    if isinstance(expr, sympy.Pow) and expr.exp == sympy.S.Half and not expr.base.is_positive:
        return root(expr.base)
    if isinstance(expr, sympy.Max):
        return _fold(_max2, list(expr.args))
    if isinstance(expr, sympy.Min):
        return _fold(_min2, list(expr.args))
    return expr


def condition_form(cond: sympy.Basic) -> sympy.Basic:
    """Conditions keep abs/max/min/sign; relu and clip become max/min, which backends print natively."""
    return cond.replace(relu, lambda x: sympy.Max(x, 0)).replace(
        clip, lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi))


def lower(expr: sympy.Expr) -> sympy.Expr:
    """Rewrite abs, sign, relu, clip, max, min in value positions as Piecewise (bottom-up)."""
    if isinstance(expr, Piecewise):
        return Piecewise(*[(lower(e), condition_form(c)) for e, c in expr.args])
    if not expr.args or isinstance(expr, sympy.Symbol):
        return expr
    if isinstance(expr, sympy.logic.boolalg.Boolean) and not isinstance(expr, sympy.Expr):
        return condition_form(expr)
    rebuilt = expr.func(*[lower(a) for a in expr.args])
    return _lower_node(rebuilt)


def is_smooth_form(expr: sympy.Basic) -> bool:
    """True when no value position holds a function that `lower` would rewrite."""
    return lower(expr) == expr
