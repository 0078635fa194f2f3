"""Named rewrite rules from the Piecewise forms that differentiation leaves back to the native operations
an expert writes: each rule is an identity on its whole domain, kink values included (the kink
convention of `canonical` is what makes them exact).

    Piecewise((a, u > 0), (b, u < 0), ((a + b)/2, True))   ->  (a + b)/2 + (a - b)/2 sign(u)
        (a tie split 0.5/0.5: the derivative of max, min and abs; pinball's gradient is
         1/2 - tau - sign(e)/2, one sign and one multiply-add instead of three nested wheres)
    Piecewise((lo, x < lo), (hi, x > hi), (x, True))       ->  clip(x, lo, hi)
    Piecewise((s u, |u| <= k), (s k sign(u), True))         ->  s clip(u, -k, k)     (k >= 0 known)
        (Huber's gradient: one clamp of the residual)
    Piecewise((x, x > 0), (0, True))                         ->  relu(x)
    Piecewise(..., (a, c), (a, True))                        ->  Piecewise(..., (a, True))

The first rule puts a Piecewise in a normal form over its comparisons: each comparison is a sign test of
some u (u > 0, u < 0, or their negations); the value is tabulated on every consistent sign pattern
(u > 0 and u < 0 never hold together), equal values are grouped, and each group's condition is
minimized with SymPy's simplify_logic, the patterns of earlier groups and the impossible ones being
don't-cares. Nested and folded Piecewise functions (the derivative of a product of clips) become one
flat Piecewise with the simplest conditions, which the other rules then recognize.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable

import sympy
from sympy import Piecewise, S
from sympy.core.relational import Relational
from sympy.logic.boolalg import BooleanAtom, simplify_logic

from .functions import clip, relu

MAX_SIGN_TESTS = 3   # distinct u of one Piecewise the normal form tabulates (3^3 sign patterns)


@dataclass(frozen=True)
class Rule:
    """A named identity on Piecewise nodes; `apply` returns the replacement, or None when it does not match."""

    name: str
    apply: Callable[[Piecewise], sympy.Expr | None]


def _sign_test(cond) -> tuple[sympy.Expr, int] | None:
    """`u > 0` -> (u, 1), `u < 0` -> (u, -1), for any strict comparison `a > b` (u = a - b), with u
    normalized so that -u and u give the same u."""
    if not isinstance(cond, (sympy.StrictGreaterThan, sympy.StrictLessThan)):
        return None
    u = cond.lhs - cond.rhs
    sign = 1 if isinstance(cond, sympy.StrictGreaterThan) else -1
    if u.could_extract_minus_sign():
        u, sign = -u, -sign
    return u, sign


def _signs(cond, tests: dict) -> sympy.Basic | None:
    """cond as a formula in sign-test symbols: tests maps u -> (P_u, N_u) standing for u > 0, u < 0."""
    def atom(u):
        if u not in tests:
            tests[u] = (sympy.Symbol(f"P{len(tests)}"), sympy.Symbol(f"N{len(tests)}"))
        return tests[u]

    def convert(node):
        if isinstance(node, BooleanAtom):
            return node
        if isinstance(node, Relational):
            if node.rel_op not in ("<", ">", "<=", ">=", "==", "!="):
                return None
            u = node.lhs - node.rhs
            op = node.rel_op
            if u.could_extract_minus_sign():
                u = -u
                op = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "==", "!=": "!="}[op]
            if u.is_number:
                return None
            positive, negative = atom(u)
            return {">": positive, "<": negative, ">=": sympy.Not(negative), "<=": sympy.Not(positive),
                    "==": sympy.And(sympy.Not(positive), sympy.Not(negative)),
                    "!=": sympy.Or(positive, negative)}[op]
        if isinstance(node, (sympy.And, sympy.Or, sympy.Not)):
            args = [convert(a) for a in node.args]
            return None if any(a is None for a in args) else node.func(*args)
        return None

    return convert(cond)


def _relation(formula, tests: dict):
    """A simplified formula in sign-test symbols back to comparisons."""
    back = {}
    for u, (positive, negative) in tests.items():
        back[positive] = u > 0
        back[negative] = u < 0

    def convert(node):
        if node in back:
            return back[node]
        if isinstance(node, sympy.Not) and node.args[0] in back:
            return back[node.args[0]].negated
        if isinstance(node, (sympy.And, sympy.Or)):
            return node.func(*[convert(a) for a in node.args])
        return node

    return convert(formula)


def _exclusions(us: list) -> list:
    """Sign patterns that SymPy's assumptions rule out: if a u_i + b u_j >= 0 is known (delta - e and
    delta + e with delta >= 0), a u_i and b u_j are never both negative (never both <= 0 if > 0)."""
    rules = []
    for i, j in itertools.combinations(range(len(us)), 2):
        for a, b in itertools.product((1, -1), repeat=2):
            total = a * us[i] + b * us[j]
            if total.is_positive:
                rules.append(lambda signs, i=i, j=j, a=a, b=b: a * signs[i] <= 0 and b * signs[j] <= 0)
            elif total.is_nonnegative:
                rules.append(lambda signs, i=i, j=j, a=a, b=b: a * signs[i] < 0 and b * signs[j] < 0)
    return rules


def _normal_form(pw: Piecewise):
    tests: dict = {}
    conditions = []
    for piece in pw.args:
        formula = _signs(piece.cond, tests)
        if formula is None or len(tests) > MAX_SIGN_TESTS:
            return None
        conditions.append(formula)
    if not tests:
        return None
    symbols = [s for pair in tests.values() for s in pair]
    exclusions = _exclusions(list(tests))
    groups: dict = {}          # value -> list of patterns (dicts symbol -> bool)
    order: list = []
    first: dict = {}           # value -> the first piece that gives it (the rebuilt order follows the pieces)
    impossible = []
    for signs in itertools.product((1, -1, 0), repeat=len(tests)):
        pattern = {}
        if any(rule(signs) for rule in exclusions):
            for (positive, negative), sign in zip(tests.values(), signs):
                pattern[positive], pattern[negative] = sign > 0, sign < 0
            impossible.append(pattern)
            continue
        for (positive, negative), sign in zip(tests.values(), signs):
            pattern[positive], pattern[negative] = sign > 0, sign < 0
        for index, (piece, formula) in enumerate(zip(pw.args, conditions)):
            truth = formula.xreplace({k: sympy.true if v else sympy.false for k, v in pattern.items()})
            if truth == sympy.true:
                value = piece.expr
                first.setdefault(value, index)
                break
        else:
            impossible.append(pattern)
            continue
        if value not in groups:
            groups[value] = []
            order.append(value)
        groups[value].append(pattern)
    for positive, negative in tests.values():  # u > 0 and u < 0 together: never
        for rest in itertools.product((True, False), repeat=len(symbols) - 2):
            others = [s for s in symbols if s not in (positive, negative)]
            impossible.append({positive: True, negative: True, **dict(zip(others, rest))})
    if len(order) == 1:
        return order[0]
    order.sort(key=lambda v: first[v])
    # the biggest group is the default (True); the others keep their order
    default = max(order, key=lambda v: (len(groups[v]), order.index(v)))
    pieces, handled = [], list(impossible)
    for value in order:
        if value == default:
            continue
        minterms = [[p[s] for s in symbols] for p in groups[value]]
        dontcares = [[p.get(s, False) for s in symbols] for p in handled]
        formula = simplify_logic(sympy.SOPform(symbols, minterms, dontcares), form="dnf")
        pieces.append((value, _relation(formula, tests)))
        handled.extend(groups[value])
    pieces.append((default, True))
    rebuilt = Piecewise(*pieces)
    return rebuilt if rebuilt != pw else None


def _same(a: sympy.Expr, b: sympy.Expr) -> bool:
    return a == b or sympy.expand(a - b) == 0


def _tie_split(pw: Piecewise):
    pieces = list(pw.args)
    if len(pieces) < 3 or pieces[-1].cond != S.true:
        return None
    (a, c1), (b, c2), (m, _) = pieces[-3], pieces[-2], pieces[-1]
    first, second = _sign_test(c1), _sign_test(c2)
    if first is None or second is None or not _same(first[0], second[0]) or first[1] != -second[1]:
        return None
    u = first[0]
    if first[1] < 0:   # (a when u < 0), (b when u > 0): swap to positive-first
        a, b = b, a
    if not _same(2 * m, a + b):
        return None
    tail = (a + b) / 2 + (a - b) / 2 * sympy.sign(u)
    rest = pieces[:-3]
    return Piecewise(*rest, (tail, True)) if rest else tail


def _positive_part(cond) -> sympy.Expr | None:
    """q with cond equivalent to q > 0 (for a strict comparison)."""
    test = _sign_test(cond)
    return None if test is None else test[0] * test[1]


def _clip(pw: Piecewise):
    pieces = list(pw.args)
    if len(pieces) != 3 or pieces[-1].cond != S.true:
        return None
    (lo, c1), (hi, c2), (x, _) = pieces
    q1, q2 = _positive_part(c1), _positive_part(c2)
    if q1 is None or q2 is None:
        return None
    if _same(q1, lo - x) and _same(q2, x - hi):
        return clip(x, lo, hi)
    # (hi, x > hi) first: the same when the two regions cannot overlap, i.e. lo <= hi
    if _same(q1, x - lo) and _same(q2, hi - x) and (lo - hi).is_nonnegative:
        return clip(x, hi, lo)
    return None


def _bound(cond) -> tuple[sympy.Expr, sympy.Expr] | None:
    """`|u| <= k` (or `k >= |u|`) -> (u, k)."""
    if isinstance(cond, sympy.LessThan) and isinstance(cond.lhs, sympy.Abs):
        return cond.lhs.args[0], cond.rhs
    if isinstance(cond, sympy.GreaterThan) and isinstance(cond.rhs, sympy.Abs):
        return cond.rhs.args[0], cond.lhs
    return None


def _abs_clip(pw: Piecewise):
    pieces = list(pw.args)
    if len(pieces) != 2 or pieces[-1].cond != S.true:
        return None
    (inside, cond), (outside, _) = pieces
    bound = _bound(cond)
    if bound is None:
        return None
    u, k = bound
    if k.is_nonnegative is not True or u.is_zero:
        return None
    scale = sympy.cancel(inside / u)
    if scale.has(u) or any(s in scale.free_symbols for s in u.free_symbols):
        return None
    if not _same(outside, scale * k * sympy.sign(u)):
        return None
    return scale * clip(u, -k, k)


def _relu(pw: Piecewise):
    pieces = list(pw.args)
    if len(pieces) != 2 or pieces[-1].cond != S.true or pieces[-1].expr != 0:
        return None
    x, cond = pieces[0]
    q = _positive_part(cond)
    return relu(x) if q is not None and _same(q, x) else None


def _merge_tail(pw: Piecewise):
    pieces = list(pw.args)
    if len(pieces) < 2 or pieces[-1].cond != S.true or pieces[-2].expr != pieces[-1].expr:
        return None
    rest = pieces[:-2]
    return Piecewise(*rest, (pieces[-1].expr, True)) if rest else pieces[-1].expr


RULES: tuple[Rule, ...] = (  # after the normal form (`_normal_form`), which every Piecewise gets first
    Rule("merge-equal-tail", _merge_tail),
    Rule("tie-split-to-sign", _tie_split),
    Rule("clip", _clip),
    Rule("abs-bound-to-clip", _abs_clip),
    Rule("relu", _relu),
)


def native(expr: sympy.Expr, rules: tuple[Rule, ...] = RULES) -> sympy.Expr:
    """Apply the rules bottom-up to every Piecewise, until none matches."""
    def rewrite(node):
        for _ in range(8):
            if not isinstance(node, Piecewise):
                return node
            for rule in rules:
                replaced = rule.apply(node)
                if replaced is not None:
                    node = replaced
                    break
            else:
                return node
        return node

    if not expr.has(Piecewise):
        return expr
    return expr.replace(lambda n: isinstance(n, Piecewise), lambda n: rewrite(_normal_form(n) or n))
