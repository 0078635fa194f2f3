"""Named rewrite rules applied before printing: each replaces a form that overflows or cancels with
an equal form that does not. Every rule is an identity (tests check each at high precision).

    log(1 + x)            -> log1p(x)
    exp(x) - 1            -> expm1(x)          (inside any sum: a + exp(x) - 1 -> a + expm1(x))
    1 / (1 + exp(-z))     -> sigmoid(z)
    log(1 + exp(z))       -> softplus(z)       (also log1p(exp(z)))
    log(sigmoid(z))       -> -softplus(-z)
    log(1 - sigmoid(z))   -> -softplus(z)
    1 - sigmoid(z)        -> sigmoid(-z)       (no cancellation when sigmoid(z) is near 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy
from sympy import Wild, exp, log
from sympy.codegen.cfunctions import expm1, log1p

from .functions import sigmoid, softplus


@dataclass(frozen=True)
class Rule:
    """A named identity, applied everywhere it matches."""

    name: str
    apply: Callable[[sympy.Expr], sympy.Expr]


def _pattern(name: str, query, value) -> Rule:
    return Rule(name, lambda expr: expr.replace(query, value))


_z = Wild("z")


def _is_one_minus_sigmoid(expr) -> bool:
    return (isinstance(expr, sympy.Add) and len(expr.args) == 2 and sympy.S.One in expr.args
            and any(isinstance(t, sympy.Mul) and t.args == (-1, sigmoid(t.args[-1].args[0]))
                    if isinstance(t, sympy.Mul) and isinstance(t.args[-1], sigmoid) else False
                    for t in expr.args))


def _one_minus_sigmoid(expr):
    term = next(t for t in expr.args if t != sympy.S.One)
    return sigmoid(-term.args[-1].args[0])


def _is_log_one_plus(expr) -> bool:
    return isinstance(expr, log) and isinstance(expr.args[0], sympy.Add) and sympy.S.One in expr.args[0].args


def _log1p(expr):
    return log1p(expr.args[0] - 1)


def _has_exp_minus_one(expr) -> bool:
    return isinstance(expr, sympy.Add) and sympy.S.NegativeOne in expr.args and \
        any(isinstance(t, exp) for t in expr.args)


def _expm1(expr):
    # SymPy's expm1_opt factors and splits exp(a + b) into exp(a) exp(b), which can overflow; this does not.
    first = next(t for t in expr.args if isinstance(t, exp))
    rest = [t for t in expr.args if t is not first and t != sympy.S.NegativeOne]
    return sympy.Add(expm1(first.args[0]), *rest)


RULES: tuple[Rule, ...] = (
    _pattern("sigmoid-from-exp", 1 / (1 + exp(-_z)), sigmoid(_z)),
    _pattern("softplus-from-log", log(1 + exp(_z)), softplus(_z)),
    _pattern("softplus-from-log1p", log1p(exp(_z)), softplus(_z)),
    Rule("one-minus-sigmoid", lambda expr: expr.replace(_is_one_minus_sigmoid, _one_minus_sigmoid)),
    _pattern("log-sigmoid", log(sigmoid(_z)), -softplus(-_z)),
    Rule("log1p", lambda expr: expr.replace(_is_log_one_plus, _log1p)),
    Rule("expm1", lambda expr: expr.replace(_has_exp_minus_one, _expm1)),
)


def stabilize(expr: sympy.Expr, rules: tuple[Rule, ...] = RULES) -> sympy.Expr:
    """Apply every rule until nothing changes (at most a few passes)."""
    for _ in range(4):
        before = expr
        for rule in rules:
            expr = rule.apply(expr)
        if expr == before:
            break
    return expr
