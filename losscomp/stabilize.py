"""Named rewrite rules applied before printing: each replaces a form that overflows or cancels with
an equal form that does not. Every rule is an identity (tests check each at high precision).

    log(1 + x)            -> log1p(x)
    exp(x) - 1            -> expm1(x)          (inside any sum: a + exp(x) - 1 -> a + expm1(x))
    1 / (1 + exp(-z))     -> sigmoid(z)
    log(1 + exp(z))       -> softplus(z)       (also log1p(exp(z)))
    log(sigmoid(z))       -> -softplus(-z)
    log(1 - sigmoid(z))   -> -softplus(z)
    1 - sigmoid(z)        -> sigmoid(-z)       (no cancellation when sigmoid(z) is near 1)
    1 - 2 sigmoid(z)      -> -tanh(z / 2)      (and 2 sigmoid(z) - 1 -> tanh(z / 2): no cancellation near 0)
    x * log(x)            -> xlogy(x, x)       (0 at x = 0, for an x whose domain includes 0)
    x * log(x / q)        -> xlogy(x, x / q)   (the same, for a KL term p log(p/q))
    log(cosh(x))          -> log1p(2 sinh(x/2)^2) for |x| < 1, |x| + softplus(-2|x|) - log 2 beyond

Two more passes work on whole definitions and on printed branches:

    sum(exp(u))           -> exp(m + L), m = max(u), L = log(sum(exp(u - m))) (a reduction:
                             log(sum(exp(u))) becomes m + L, exp(z) / sum(exp(z)) becomes exp(z - m - L))
    guard(where(c, a, b)) -> every log, sqrt, power, lgamma, exp, sinh, cosh in a branch gets its argument
                             replaced by 1 where the branch is not taken (the "double where"), so the
                             branch thrown away never makes an inf, a NaN or a warning, nor a NaN in
                             autodiff
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import sympy
from sympy import Wild, exp, log
from sympy.codegen.cfunctions import expm1, log1p

from .functions import root, sigmoid, softplus, xlogy
from .ir import Definition, Reduction
from .naming import internal


@dataclass(frozen=True)
class Rule:
    """A named identity, applied everywhere it matches; `needs`: functions the expression must contain for
    the rule to have anything to match (checked first: SymPy's pattern matching is slow)."""

    name: str
    apply: Callable[[sympy.Expr], sympy.Expr]
    needs: tuple = ()

    def __call__(self, expr: sympy.Expr) -> sympy.Expr:
        if self.needs and not expr.has(*self.needs):
            return expr
        return self.apply(expr)


def _pattern(name: str, query, value, needs: tuple = ()) -> Rule:
    return Rule(name, lambda expr: expr.replace(query, value), needs)


_z = Wild("z")


def _is_one_minus_sigmoid(expr) -> bool:
    return (isinstance(expr, sympy.Add) and len(expr.args) == 2 and sympy.S.One in expr.args
            and any(isinstance(t, sympy.Mul) and t.args == (-1, sigmoid(t.args[-1].args[0]))
                    if isinstance(t, sympy.Mul) and isinstance(t.args[-1], sigmoid) else False
                    for t in expr.args))


def _one_minus_two_sigmoid_term(expr):
    """In a sum k + ... - 2k sigmoid(z) (k = 1 or -1), the term -2k sigmoid(z)."""
    if not isinstance(expr, sympy.Add):
        return None
    for k in (sympy.S.One, sympy.S.NegativeOne):
        if k in expr.args:
            for t in expr.args:
                if isinstance(t, sympy.Mul) and len(t.args) == 2 and t.args[0] == -2 * k \
                        and isinstance(t.args[1], sigmoid):
                    return t
    return None


def _one_minus_two_sigmoid(expr):
    term = _one_minus_two_sigmoid_term(expr)
    k = -term.args[0] / 2
    rest = [t for t in expr.args if t is not term and t != k]
    return sympy.Add(-k * sympy.tanh(term.args[1].args[0] / 2), *rest)


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


def _may_be_zero(u) -> bool:
    """A symbol whose domain includes 0 (binary, simplex, nonnegative, ...), not one known positive."""
    return isinstance(u, sympy.Symbol) and u.is_nonnegative is True and u.is_positive is not True


def _has_xlogx(expr) -> bool:
    return isinstance(expr, sympy.Mul) and any(_may_be_zero(u) and expr.has(log(u)) for u in expr.args)


def _xlogx(expr):
    u = next(u for u in expr.args if _may_be_zero(u) and expr.has(log(u)))
    expanded = sympy.expand_mul(expr)
    terms = []
    for term in sympy.Add.make_args(expanded):
        factors = sympy.Mul.make_args(term)
        if u in factors and log(u) in factors:
            rest = [f for f in factors if f not in (u, log(u))]
            term = sympy.Mul(xlogy(u, u), *rest)
        terms.append(term)
    return sympy.Add(*terms)


def _log_cosh(x):
    """log(cosh(x)) without overflow (cosh(400) is inf in float32) or cancellation near 0: the catalog's
    log_cosh, log1p(2 sinh(x/2)^2) for |x| < 1, |x| + softplus(-2|x|) - log 2 beyond."""
    a = sympy.Abs(x)
    return sympy.Piecewise((log1p(2 * sympy.sinh(x / 2) ** 2), a < 1), (a + softplus(-2 * a) - log(2), True))


def _is_x_log_ratio(expr) -> bool:
    """x * log(x * r) with x possibly 0 (a probability, a count): 0 log 0 is 0, not NaN."""
    if not isinstance(expr, sympy.Mul):
        return False
    for u in expr.args:
        if _may_be_zero(u):
            for f in expr.args:
                if isinstance(f, log) and isinstance(f.args[0], sympy.Mul) and u in f.args[0].args:
                    return True
    return False


def _x_log_ratio(expr):
    for u in expr.args:
        if _may_be_zero(u):
            for f in expr.args:
                if isinstance(f, log) and isinstance(f.args[0], sympy.Mul) and u in f.args[0].args:
                    rest = [g for g in expr.args if g is not u and g is not f]
                    return sympy.Mul(xlogy(u, f.args[0]), *rest)
    return expr  # pragma: no cover - only called where _is_x_log_ratio matched


RULES: tuple[Rule, ...] = (
    _pattern("log-cosh", log(sympy.cosh(_z)), lambda z: _log_cosh(z), (sympy.cosh,)),
    Rule("x-log-ratio", lambda expr: expr.replace(_is_x_log_ratio, _x_log_ratio), (log,)),
    _pattern("sigmoid-from-exp", 1 / (1 + exp(-_z)), sigmoid(_z), (exp,)),
    _pattern("softplus-from-log", log(1 + exp(_z)), softplus(_z), (exp,)),
    _pattern("softplus-from-log1p", log1p(exp(_z)), softplus(_z), (log1p,)),
    Rule("one-minus-two-sigmoid", lambda expr: expr.replace(
        lambda e: _one_minus_two_sigmoid_term(e) is not None, _one_minus_two_sigmoid), (sigmoid,)),
    Rule("one-minus-sigmoid", lambda expr: expr.replace(_is_one_minus_sigmoid, _one_minus_sigmoid), (sigmoid,)),
    _pattern("log-sigmoid", log(sigmoid(_z)), -softplus(-_z), (sigmoid,)),
    Rule("log1p", lambda expr: expr.replace(_is_log_one_plus, _log1p), (log,)),
    Rule("expm1", lambda expr: expr.replace(_has_exp_minus_one, _expm1), (exp,)),
    Rule("xlogx", lambda expr: expr.replace(_has_xlogx, _xlogx), (log,)),
)


def stabilize(expr: sympy.Expr, rules: tuple[Rule, ...] = RULES) -> sympy.Expr:
    """Apply every rule until nothing changes (at most a few passes)."""
    for _ in range(4):
        before = expr
        for rule in rules:
            expr = rule(expr)
        if expr == before:
            break
    return expr


def logsumexp_reductions(definition: Definition) -> Definition:
    """Replace each reduction sum(exp(u)) by exp(m + L), m = max(u), L = log(sum(exp(u - m))): then
    log(sum(exp(u))) is m + L and exp(z) / sum(exp(z)) is exp(z - m - L), whatever the size of z."""
    replacement: dict = {}
    reductions: list[Reduction] = []
    taken = {r.symbol.name for r in definition.reductions}

    def fresh(stem: str) -> sympy.Symbol:
        index = 0
        while internal(f"{stem}{index}") in taken:
            index += 1
        taken.add(internal(f"{stem}{index}"))
        return sympy.Symbol(internal(f"{stem}{index}"), real=True)

    def substitute(expr: sympy.Expr) -> sympy.Expr:
        # exp(z) * exp(-m - L) -> exp(z - m - L), so that log(exp(...)) of a real argument cancels
        new = expr.xreplace(replacement)
        return sympy.powsimp(new, combine="exp", deep=True) if new != expr else expr

    for r in definition.reductions:
        operand = substitute(r.operand)
        if r.kind == "sum" and isinstance(operand, exp):
            u = operand.args[0]
            shift, lse = fresh("max"), fresh("lse")
            reductions.append(Reduction(shift, "max", u, r.axis))
            reductions.append(Reduction(lse, "logsumexp", u - shift, r.axis))
            replacement[r.symbol] = exp(shift + lse)
        else:
            reductions.append(Reduction(r.symbol, r.kind, operand, r.axis))
    if not replacement:
        return definition
    return replace(definition, body=substitute(definition.body), reductions=tuple(reductions))


_SAFE_ARGUMENT = {
    # exp, sinh and cosh are defined everywhere but overflow: a branch must not compute them where it is
    # thrown away (log_cosh's log1p(2 sinh(e/2)^2) at |e| = 700)
    exp: lambda a: not a.free_symbols,
    sympy.sinh: lambda a: not a.free_symbols,
    sympy.cosh: lambda a: not a.free_symbols,
    log: lambda a: a.is_positive,
    sympy.loggamma: lambda a: a.is_positive,
    log1p: lambda a: (a + 1).is_positive,
    root: lambda a: a.is_nonnegative,
}


def _unsafe(node) -> sympy.Expr | None:
    """The argument of a function that may be undefined (log, sqrt, 1/x, lgamma, ...), if not provably safe."""
    for kind, safe in _SAFE_ARGUMENT.items():
        if isinstance(node, kind):
            return None if safe(node.args[0]) else node.args[0]
    if isinstance(node, sympy.Pow) and not (node.exp.is_Integer and node.exp >= 0):
        # x^a for a > 0 is defined at x >= 0; a negative power needs x > 0
        safe = node.base.is_nonnegative if node.exp.is_positive else node.base.is_positive
        return None if safe else node.base
    return None


def _guard_branch(value: sympy.Expr, region, arrays) -> sympy.Expr:
    def fix(node):
        argument = _unsafe(node)
        if argument is None or not argument.free_symbols:
            return node
        if arrays is not None and not (argument.free_symbols & arrays):
            return node  # a function of parameters only is computed once, not per element: nothing to guard
        guarded = sympy.Piecewise((argument, region), (1, True))
        if isinstance(node, sympy.Pow):
            return sympy.Pow(guarded, node.exp, evaluate=False)
        return node.func(guarded, *node.args[1:])

    return value.replace(lambda n: _unsafe(n) is not None, fix)


def guard(expr: sympy.Expr, arrays: frozenset | None = None) -> sympy.Expr:
    """The double where: in each branch of a Piecewise, unsafe arguments become 1 where it is not taken.
    `arrays`: the symbols that hold arrays (arguments, reductions); an argument of none of them is not
    guarded (a parameter's log is one number, and the same in every branch)."""
    def fix(pw):
        pieces, taken = [], sympy.S.false
        for value, cond in pw.args:
            region = sympy.And(cond, sympy.Not(taken)) if taken != sympy.S.false else cond
            if region == sympy.S.true:
                region = sympy.Not(taken) if taken != sympy.S.false else sympy.S.true
            pieces.append((value if region == sympy.S.true else _guard_branch(value, region, arrays), cond))
            taken = sympy.Or(taken, cond)
        return sympy.Piecewise(*pieces)

    return expr.replace(lambda n: isinstance(n, sympy.Piecewise), fix)
