"""Derivatives: exact against high-precision numerical differentiation, kinks by the stated convention."""

from __future__ import annotations

import mpmath
import pytest
import sympy
from hypothesis import given, settings
from sympy.codegen.cfunctions import expm1, log1p
from hypothesis import strategies as st

import losscomp
from losscomp import catalog
from losscomp.canonical import lower

p = sympy.Symbol("p", real=True)
y = sympy.Symbol("y", real=True)


def grad_at(source: str, **values) -> sympy.Expr:
    loss = losscomp.compile(source)
    symbols = {s.name: s for s in loss.gradient.free_symbols}
    return loss.gradient.subs({symbols[k]: v for k, v in values.items() if k in symbols})


@pytest.mark.parametrize("source, at, expected", [
    ("f(y, p) = abs(p)", {"p": 0}, 0),                       # abs'(0) = 0
    ("f(y, p) = relu(p)", {"p": 0}, 0),                      # relu'(0) = 0
    ("f(y, p) = sign(p) * 3", {"p": 0}, 0),
    ("f(y, p) = max(p, y)", {"p": 1, "y": 1}, sympy.Rational(1, 2)),   # a tie splits the gradient
    ("f(y, p) = min(2*p, y)", {"p": 1, "y": 2}, 1),          # half of d(2p)/dp
    ("f(y, p) = clip(p, -1, 1)", {"p": 1}, 1),               # clip passes the gradient at its bounds
    ("f(y, p) = clip(p, -1, 1)", {"p": -1}, 1),
    ("f(y, p) = clip(p, -1, 1)", {"p": 2}, 0),
    ("f(y, p) = if p <= 0 then p^2 else 3*p", {"p": 0}, 0),  # the branch the condition selects
    ("pinball(y, p; tau = 0.9) = max(tau*(y - p), (tau - 1)*(y - p))", {"p": 0, "y": 0},
     sympy.Rational(1, 2) - sympy.Rational(9, 10)),           # as torch.maximum: (-tau + (1 - tau)) / 2
])
def test_kink_convention(source, at, expected):
    value = grad_at(source, **at)
    if value.free_symbols:  # parameters at their defaults
        loss = losscomp.compile(source)
        value = value.subs({q.symbol: q.default for q in loss.definition.parameters})
    assert sympy.simplify(value - expected) == 0


@pytest.mark.parametrize("name", catalog.names())
def test_catalog_derivatives_are_emittable(name):
    d = losscomp.compile(name).derivation
    exprs = [step.expr for program in (d.forward, d.backward, d.tangent) for step in program.steps]
    exprs += [h for row in d.diagonal for h in row]
    assert exprs
    for expr in exprs:
        assert not expr.has(sympy.DiracDelta, sympy.Heaviside, sympy.Derivative, sympy.nan, sympy.zoo)


_leaves = st.sampled_from(["p", "y", "2", "0.5"])


def _compose(children):
    return st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*"]), children, children).map(lambda t: f"({t[1]} {t[0]} {t[2]})"),
        st.tuples(st.sampled_from(["exp", "tanh", "sin", "sigmoid", "softplus", "log1p", "sqrt", "cosh"]),
                  children).map(lambda t: f"{t[0]}({t[1]})" if t[0] not in ("log1p", "sqrt")
                                else f"{t[0]}(1 + ({t[1]})^2)"),
        children.map(lambda c: f"({c})^2"),
    )


smooth_formulas = st.recursive(_leaves, _compose, max_leaves=6)


def _mp(expr: sympy.Expr, at: dict) -> mpmath.mpf:
    plain = expr.rewrite(sympy.exp).replace(log1p, lambda a: sympy.log(1 + a)).replace(expm1, lambda a: sympy.exp(a) - 1)
    value = sympy.N(plain, 50, subs={k: sympy.Float(v, 50) for k, v in at.items()})
    return mpmath.mpf(str(sympy.re(value)))


@settings(max_examples=25, deadline=None)
@given(smooth_formulas, st.floats(-2, 2), st.floats(-2, 2))
def test_gradient_and_hessian_match_high_precision_differences(formula, p0, y0):
    loss = losscomp.compile(f"f(y, p) = {formula}")
    value, (g,), ((h,),) = loss.derivation.value, loss.derivation.gradient, loss.derivation.hessian
    mpmath.mp.dps = 50
    f = lambda t: _mp(value, {y: y0, p: t})  # noqa: E731
    # central differences at 50 digits: steps small enough for O(h^2) and far above the rounding
    numeric_g = mpmath.diff(f, mpmath.mpf(p0), h=mpmath.mpf("1e-15"))
    numeric_h = mpmath.diff(f, mpmath.mpf(p0), 2, h=mpmath.mpf("1e-10"))
    exact_g, exact_h = _mp(g, {y: y0, p: p0}), _mp(h, {y: y0, p: p0})
    assert abs(exact_g - numeric_g) <= 1e-15 * (1 + abs(numeric_g))
    assert abs(exact_h - numeric_h) <= 1e-12 * (1 + abs(numeric_h))


def test_lowering_leaves_smooth_expressions_alone():
    expr = sympy.exp(p) * y + sympy.sin(y)
    assert lower(expr) == expr
