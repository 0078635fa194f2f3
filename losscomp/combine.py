"""Linear combinations of compiled losses: `0.7 * mse + 0.3 * underestimation` as one new loss.

The combination is built on the definitions, not on emitted code: its body is the weighted sum of
the terms' bodies, so it is derived, stabilized and emitted like any loss written in the language,
and its gradient and Hessian are the symbolic ones of the sum.

How the terms' names meet:
  arguments    by position: every term takes the same number; the combination keeps the names of
               the first term. Domains narrow to the stricter one (real and positive give positive);
               two domains neither of which contains the other, or two shape roles, are an error.
  targets      the same positions in every term (mse differentiates by its second argument; so
               must the term added to it).
  parameters   one name with one default (and domain) is one parameter, shared by every term that
               has it; the same name with another default is renamed in the later term to
               `<term>_<name>` (then `<term>_<name>_2`, ...), which the source text shows:
               `huber(y, y_pred, delta = delta) + huber(y, y_pred, delta = huber_delta)`.
  reductions   each term keeps its own; the same reduction of the same operand is computed once.
  bindings     `where` names, renamed like parameters when two terms bind one name to different values.
  reduction    ("mean", "sum", "none") the same for every term.

The source text of the result (the emitted header shows it) is loss language: the definitions of the
terms as their sources wrote them, then `mse_plus_underestimation(y, y_pred) = 0.7*mse(y, y_pred) +
0.3*underestimation(y, y_pred)`. Like terms add up (`a + 0.5 * a` is `1.5*a`); `a - a` is an error.

This stage comes before the compiler: the operators of `CompiledLoss` (which compile a catalog name
or text operand first) call `add` and `scale`, and the result is built as the operands' own class.
"""

from __future__ import annotations

import keyword
import math
import numbers
import weakref
from fractions import Fraction
from typing import Any, Iterable, Sequence

import sympy

from .derive import derive
from .errors import LossDefinitionError, LossError, LossOptionError
from .ir import Argument, Definition, Parameter, Reduction, argument_symbol, parameter_symbol
from .naming import internal, stem
from .stabilize import logsumexp_reductions, stabilize

# A compiled loss (losscomp.compiler.CompiledLoss; this stage comes before the compiler and only
# receives them): anything with .definition, .derivation, .reduction, .rewrites, .targets, .name.
Loss = Any
Term = tuple[sympy.Rational, Loss]

# domain -> the domains it contains (besides itself)
_CONTAINS = {
    "real": {"positive", "nonnegative", "unit", "binary", "sign", "onehot", "simplex", "count"},
    "nonnegative": {"positive", "unit", "binary", "onehot", "simplex", "count"},
    "positive": {"unit"},
    "count": {"binary", "onehot"},
    "binary": {"onehot"},
    "simplex": {"onehot"},
}
_NAME_LIMIT = 48  # longer joined names fall back to "combined"


# combination -> its (coefficient, loss) terms, so that `0.7 * a + 0.3 * b + c` is one flat sum
_TERMS: "weakref.WeakKeyDictionary[Loss, tuple[Term, ...]]" = weakref.WeakKeyDictionary()


# -- the operands ----------------------------------------------------------------------------------

def coefficient(value: object) -> sympy.Rational:
    """A finite real number as an exact rational (0.7 -> 7/10, as written)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, sympy.Number)):
        raise LossOptionError(f"a loss is scaled by a real number, not by {type(value).__name__}")
    if isinstance(value, sympy.Rational):
        return value
    if isinstance(value, numbers.Rational):
        fraction = Fraction(int(value.numerator), int(value.denominator))
        return sympy.Rational(fraction.numerator, fraction.denominator)
    number = float(value)
    if not math.isfinite(number):
        raise LossOptionError(f"a loss is scaled by a finite real number, not {value!r}")
    return sympy.Rational(repr(number)) if number != int(number) else sympy.Integer(int(number))


def terms_of(loss: Loss) -> tuple[Term, ...]:
    """The (coefficient, loss) pairs of a combination, or the loss itself with coefficient 1."""
    return _TERMS.get(loss) or ((sympy.Integer(1), loss),)


def _is_loss(value: object) -> bool:
    return all(hasattr(value, a) for a in ("definition", "derivation", "reduction", "rewrites"))


def operand(value: object) -> Loss | None:
    """A loss as it is, None for the number 0 (`sum([a, b])` starts from 0), else an error. (Names and
    loss-language text are compiled by the operators of CompiledLoss before they come here.)"""
    if _is_loss(value):
        return value
    if isinstance(value, (numbers.Real, sympy.Number)) and not isinstance(value, bool) and value == 0:
        return None  # sum([a, b]) starts from 0
    if isinstance(value, (numbers.Number, sympy.Basic)):
        raise LossOptionError(f"a number ({value!r}) added to a loss does not change its gradient; "
                              "add losses, or scale one with *")
    raise LossOptionError(f"a loss combines with another loss, a catalog name or loss-language text, "
                          f"not {type(value).__name__}")


# -- the operators CompiledLoss delegates to ----------------------------------------------------------

def add(left: object, right: object, sign: int = 1) -> Loss:
    """left + sign * right; one side may be the number 0."""
    anchor = left if _is_loss(left) else right
    a, b = operand(left), operand(right)
    if b is None:
        return a if a is not None else anchor
    if a is None:
        return b if sign > 0 else scale(b, -1)
    _same_options(a, b)
    terms = list(terms_of(a)) + [(sign * c, loss) for c, loss in terms_of(b)]
    return weighted_sum(terms)


def scale(loss: Loss, factor: object, *, divide: bool = False) -> Loss:
    """factor * loss (or loss / factor)."""
    if _is_loss(factor):
        raise LossOptionError("losses combine linearly: a loss times a loss is not a loss of this kind; "
                              "scale a loss by a number")
    c = coefficient(factor)
    if divide:
        if c == 0:
            raise LossOptionError("a loss divided by zero")
        c = 1 / c
    if c == 0:
        raise LossOptionError("a loss scaled by zero has no gradient to give; leave the term out")
    return weighted_sum([(c * k, term) for k, term in terms_of(loss)])


def _same_options(a: Loss, b: Loss) -> None:
    if a.reduction != b.reduction:
        raise LossOptionError(f"cannot combine '{a.name}' (reduction={a.reduction!r}) with '{b.name}' "
                              f"(reduction={b.reduction!r}); compile both with one reduction")
    if a.rewrites != b.rewrites:
        raise LossOptionError(f"cannot combine '{a.name}' and '{b.name}': one was compiled with "
                              "rewrites=False; compile both alike")


# -- the combination ---------------------------------------------------------------------------------

def weighted_sum(terms: Iterable[tuple[object, Loss]], *, name: str | None = None) -> Loss:
    """sum_i c_i * loss_i as a new compiled loss (see the module docstring for how names meet).

    `terms`: (coefficient, compiled loss) pairs. `name` names the result (default: the term names
    joined, `mse_plus_underestimation`). The operators of CompiledLoss (`0.7 * a + 0.3 * b`) call this."""
    pairs = list(terms)
    if not pairs:
        raise LossOptionError("a combination needs at least one term")
    for _, loss in pairs:
        if not _is_loss(loss):
            raise LossOptionError(f"a term is a compiled loss (losscomp.compile(...)), not {type(loss).__name__}")
    first = pairs[0][1]
    for _, loss in pairs[1:]:
        _same_options(first, loss)
    flat: list[Term] = []
    for c, loss in pairs:
        k = coefficient(c)
        flat.extend((k * inner, term) for inner, term in terms_of(loss))
    flat = _collect_like_terms(flat)
    if name is not None and (not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name)):
        raise LossOptionError(f"name must be a Python identifier that is not a keyword, not {name!r}")
    definition, targets = _combined_definition(flat, name)
    if first.rewrites:
        definition = logsumexp_reductions(definition)
    symbols = tuple(definition.argument(t).symbol for t in targets)
    try:
        value = stabilize(definition.body) if first.rewrites else definition.body
        derivation = derive(definition, value, symbols)
    except LossError as error:
        raise error.with_source(definition.text) from None
    combined = type(first)(definition=definition, derivation=derivation, reduction=first.reduction,
                           rewrites=first.rewrites)
    _TERMS[combined] = tuple(flat)
    return combined


def _collect_like_terms(terms: Sequence[Term]) -> list[Term]:
    """Terms of one loss (same definition and targets) add their coefficients; zero terms drop out."""
    out: list[list] = []
    for c, loss in terms:
        for entry in out:
            if entry[1].definition == loss.definition and entry[1].targets == loss.targets:
                entry[0] += c
                break
        else:
            out.append([c, loss])
    kept = [(sympy.Rational(c), loss) for c, loss in out if c != 0]
    if not kept:
        raise LossOptionError("the terms cancel: the combination is zero")
    return kept


def _narrow(a: Argument, b: Argument, term: str) -> str:
    if a.role != b.role:
        raise LossDefinitionError(f"argument {a.name!r} is one value per {a.role} in the first term but "
                                  f"'{term}' takes its argument {b.name!r} per {b.role}")
    if a.domain == b.domain:
        return a.domain
    if b.domain in _CONTAINS.get(a.domain, ()):
        return b.domain
    if a.domain in _CONTAINS.get(b.domain, ()):
        return a.domain
    raise LossDefinitionError(f"argument {a.name!r} is {a.domain} in the first term but '{term}' takes its "
                              f"argument {b.name!r} as {b.domain}; no value is both")


class _Names:
    """The names of the combination: arguments, parameters and bindings never share one."""

    def __init__(self, taken: Iterable[str]):
        self.taken = set(taken)

    def fresh(self, wanted: str) -> str:
        name, index = wanted, 1
        while name in self.taken:
            index += 1
            name = f"{wanted}_{index}"
        self.taken.add(name)
        return name


def _combined_definition(terms: Sequence[Term], name: str | None) -> tuple[Definition, tuple[str, ...]]:
    first = terms[0][1]
    head = first.definition
    arity = len(head.arguments)
    positions = _target_positions(first)
    for _, loss in terms[1:]:
        d = loss.definition
        if len(d.arguments) != arity:
            raise LossDefinitionError(
                f"cannot combine '{head.name}' ({arity} arguments: {_names(head.arguments)}) with "
                f"'{d.name}' ({len(d.arguments)} arguments: {_names(d.arguments)}); terms are matched by "
                "position and must take the same number")
        if _target_positions(loss) != positions:
            raise LossDefinitionError(
                f"'{head.name}' is differentiated by {', '.join(first.targets)} (argument "
                f"{_ordinals(positions)}) but '{d.name}' by {', '.join(loss.targets)} (argument "
                f"{_ordinals(_target_positions(loss))}); compile them with matching wrt=")

    domains = [a.domain for a in head.arguments]
    for _, loss in terms[1:]:
        for i, (a, b) in enumerate(zip(head.arguments, loss.definition.arguments)):
            domains[i] = _narrow(Argument(a.name, domains[i], a.symbol, a.role), b, loss.name)
    arguments = tuple(Argument(a.name, domain, argument_symbol(a.name, domain), a.role)
                      for a, domain in zip(head.arguments, domains))
    names = _Names(a.name for a in arguments)

    parameters: list[Parameter] = []
    by_name: dict[str, Parameter] = {}
    reductions: list[Reduction] = []
    bindings: list[tuple[str, sympy.Expr]] = []
    body = sympy.Integer(0)
    calls: list[str] = []
    for c, loss in terms:
        d = loss.definition
        replacement: dict[sympy.Symbol, sympy.Expr] = {
            old.symbol: new.symbol for old, new in zip(d.arguments, arguments)}
        passed: list[tuple[str, str]] = []
        for p in d.parameters:
            known = by_name.get(p.name)
            if known is not None and known.default == p.default and known.domain == p.domain:
                chosen = known
            else:
                given = names.fresh(p.name if known is None and p.name not in names.taken
                                    else f"{d.name}_{p.name}")
                chosen = Parameter(given, p.default, parameter_symbol(given, p.domain), p.domain)
                parameters.append(chosen)
                by_name.setdefault(p.name, chosen)
            replacement[p.symbol] = chosen.symbol
            passed.append((p.name, chosen.name))
        for r in d.reductions:
            operand = r.operand.xreplace(replacement)
            same = next((q for q in reductions if (q.kind, q.operand, q.axis) == (r.kind, operand, r.axis)), None)
            if same is None:
                same = Reduction(_fresh_reduction(r.symbol, reductions), r.kind, operand, r.axis)
                reductions.append(same)
            replacement[r.symbol] = same.symbol
        for bound, value in d.bindings:
            value = value.xreplace(replacement)
            if any(bound == b and value == v for b, v in bindings):
                continue
            bindings.append((names.fresh(bound), value))
        body = body + c * d.body.xreplace(replacement)
        calls.append(_call_text(c, d.name, arguments, passed, first=not calls))

    targets = tuple(arguments[i].name for i in positions)
    chosen_name = name or _default_name(terms)
    header = f"{chosen_name}({', '.join(_argument_text(a) for a in arguments)}"
    if parameters:
        header += "; " + ", ".join(f"{p.name} = {_number_text(p.default)}" for p in parameters)
    line = f"{header}) = {''.join(calls)}"
    if targets != _default_targets(arguments):
        line += f"\n  wrt {', '.join(targets)}"
    text = "\n".join([*_term_texts(terms), line])
    definition = Definition(chosen_name, arguments, tuple(parameters), body, tuple(bindings), targets,
                            tuple(reductions), text)
    return definition, targets


def _target_positions(loss: Loss) -> tuple[int, ...]:
    names = [a.name for a in loss.definition.arguments]
    return tuple(names.index(t) for t in loss.targets)


def _default_targets(arguments: Sequence[Argument]) -> tuple[str, ...]:
    return (arguments[1].name if len(arguments) > 1 else arguments[0].name,)


def _fresh_reduction(symbol: sympy.Symbol, taken: Sequence[Reduction]) -> sympy.Symbol:
    base = stem(symbol.name).rstrip("0123456789") or "r"
    used = {q.symbol.name for q in taken}
    index = 0
    while internal(f"{base}{index}") in used:
        index += 1
    return sympy.Symbol(internal(f"{base}{index}"), real=True)  # as ir makes them


def _names(arguments: Sequence[Argument]) -> str:
    return ", ".join(a.name for a in arguments)


def _ordinals(positions: Sequence[int]) -> str:
    return ", ".join(str(i + 1) for i in positions)


def _argument_text(a: Argument) -> str:
    if a.domain == "real" and a.role == "element":
        return a.name
    return f"{a.name}: {a.domain}" + (f"[{a.role}]" if a.role != "element" else "")


def _number_text(value: sympy.Expr) -> str:
    """A rational as loss-language text: 0.7, 3, 1/3."""
    if not value.is_Rational:
        return str(value)  # a constant such as pi/2: SymPy's text is loss-language text
    value = sympy.Rational(value)
    if value.q == 1:
        return str(value.p)
    q, twos, fives = value.q, 0, 0
    while q % 2 == 0:
        q, twos = q // 2, twos + 1
    while q % 5 == 0:
        q, fives = q // 5, fives + 1
    if q == 1:  # a terminating decimal
        digits = max(twos, fives)
        return f"{float(value):.{digits}f}".rstrip("0") if digits <= 17 else f"{value.p}/{value.q}"
    return f"{value.p}/{value.q}"


def _call_text(c: sympy.Rational, name: str, arguments: Sequence[Argument], passed, first: bool) -> str:
    """`0.7*mse(y, y_pred)`, with ` + ` or ` - ` before every term but the first."""
    args = ", ".join(a.name for a in arguments)
    keywords = "".join(f", {own} = {given}" for own, given in passed)
    call = f"{name}({args}{keywords})"
    magnitude = abs(c)
    if magnitude == 1:
        scaled = call
    elif magnitude.p == 1:
        scaled = f"{call}/{magnitude.q}"
    else:
        text = _number_text(magnitude)
        scaled = f"({text})*{call}" if "/" in text else f"{text}*{call}"
    if first:
        return f"-{scaled}" if c < 0 else scaled
    return f" - {scaled}" if c < 0 else f" + {scaled}"


def _default_name(terms: Sequence[Term]) -> str:
    if len(terms) == 1:
        c, loss = terms[0]
        return f"{'negated' if c < 0 else 'scaled'}_{loss.name}"
    parts = [terms[0][1].name]
    for c, loss in terms[1:]:
        parts.append(("minus_" if c < 0 else "plus_") + loss.name)
    joined = "_".join(parts)
    return joined if len(joined) <= _NAME_LIMIT else "combined"


def _term_texts(terms: Sequence[Term]) -> list[str]:
    """The definitions the combination calls, once each, as their sources wrote them."""
    out: list[str] = []
    for _, loss in terms:
        d = loss.definition
        text = d.text.strip()
        if not text.startswith(f"{d.name}("):  # a bare expression: give it its header
            params = "; " + ", ".join(f"{p.name} = {_number_text(p.default)}" for p in d.parameters) \
                if d.parameters else ""
            text = f"{d.name}({_names(d.arguments)}{params}) = {text}"
        if text not in out:
            out.append(text)
    return out
