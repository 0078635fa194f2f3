"""Normal form for differentiation: non-smooth functions carry the kink convention in their derivatives.

The convention is PyTorch's, so `grad` agrees with `torch.autograd` everywhere, kinks included:

    abs'(0) = 0              d|x| = sign(x) dx
    sign' = 0
    relu'(0) = 0             d relu(x) = step(x, 0) dx
    max(a, b) at a tie       the gradient splits 0.5 / 0.5 (min likewise); an n-argument max folds
                             pairwise in SymPy's argument order
    clip(x, lo, hi)          x on [lo, hi]: the gradient passes at the bounds
    if c then a else b       the branch `c` selects, at its boundary too
    sqrt'(0), norm'(0)       0 (a subgradient), not an infinity

`lower` swaps SymPy's Abs, sign, Max and Min for the classes of `losscomp.functions` whose derivative
rules say exactly this (`absval`, `sgn`, `max2`, `min2`; relu and clip have theirs), so a derivative
is as large as the function it comes from, never a DiracDelta, a Heaviside or a Piecewise explosion.
`raise_kinks` turns a derivative back into SymPy's functions and a Piecewise per `step`.
Conditions are not differentiated and keep SymPy's functions.
"""

from __future__ import annotations

import sympy

from .functions import absval, clip, max2, min2, relu, root, sgn, step

KINK_CONVENTION = (
    "PyTorch's convention: abs'(0) = sign'(x) = relu'(0) = 0; max/min split the gradient 0.5/0.5 at a tie; "
    "clip passes the gradient at its bounds; 'if c then a else b' differentiates the branch c selects; "
    "sqrt and norm have the subgradient 0 at 0"
)


def _fold(pair, args):
    result = args[0]
    for arg in args[1:]:
        result = pair(result, arg)
    return result


def _lower_node(expr: sympy.Basic) -> sympy.Basic:
    if isinstance(expr, sympy.Abs):
        return absval(expr.args[0])
    if isinstance(expr, sympy.sign):
        return sgn(expr.args[0])
    if isinstance(expr, sympy.Pow) and expr.exp == sympy.S.Half and not expr.base.is_positive:
        return root(expr.base)
    if isinstance(expr, sympy.Max):
        return _fold(max2, list(expr.args))
    if isinstance(expr, sympy.Min):
        return _fold(min2, list(expr.args))
    return expr


def condition_form(cond: sympy.Basic) -> sympy.Basic:
    """Conditions keep abs/max/min/sign; relu and clip become max/min, which backends print natively."""
    return cond.replace(relu, lambda x: sympy.Max(x, 0)).replace(
        clip, lambda x, lo, hi: sympy.Min(sympy.Max(x, lo), hi))


def lower(expr: sympy.Expr) -> sympy.Expr:
    """abs, sign, max, min in value positions as the differentiable kink classes (bottom-up)."""
    if isinstance(expr, sympy.Piecewise):
        return sympy.Piecewise(*[(lower(e), c) for e, c in expr.args])
    if not expr.args or isinstance(expr, sympy.Symbol):
        return expr
    if isinstance(expr, sympy.logic.boolalg.Boolean) and not isinstance(expr, sympy.Expr):
        return expr
    return _lower_node(expr.func(*[lower(a) for a in expr.args]))


_RAISE = (
    (absval, lambda x: sympy.Abs(x)),
    (sgn, lambda x: sympy.sign(x)),
    (max2, lambda a, b: sympy.Max(a, b)),
    (min2, lambda a, b: sympy.Min(a, b)),
    (step, lambda x, h: step(x, h).as_piecewise()),
)


def _collect_steps(add: sympy.Add) -> sympy.Expr:
    """sum_i c_i step(+-u, h_i) with step(-u, h) = 1 - step(u, 1 - h), terms of one u and one h
    gathered: pinball's -tau step(e) + (1 - tau) step(-e) is 1 - tau - step(e)."""
    groups: dict = {}
    rest = []
    for term in add.args:
        steps = [f for f in sympy.Mul.make_args(term) if isinstance(f, step)]
        if len(steps) != 1:
            rest.append(term)
            continue
        factor = steps[0]
        coefficient = term / factor
        u, h = factor.args
        if u.could_extract_minus_sign():
            rest.append(coefficient)
            u, h, coefficient = -u, 1 - h, -coefficient
        groups.setdefault((u, h), []).append(coefficient)
    gathered = [sympy.Add(*coefficients) * step(u, h) for (u, h), coefficients in groups.items()]
    return sympy.Add(*rest, *gathered)


def raise_kinks(expr: sympy.Expr) -> sympy.Expr:
    """The kink classes back as SymPy's Abs, sign, Max, Min, and each step as a small Piecewise."""
    if expr.has(step):
        expr = expr.replace(lambda n: isinstance(n, sympy.Add) and any(isinstance(f, step) for t in n.args
                                                                       for f in sympy.Mul.make_args(t)),
                            _collect_steps)
    for cls, back in _RAISE:
        if expr.has(cls):
            expr = expr.replace(cls, back)
    return expr
