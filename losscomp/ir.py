"""Syntax tree -> definitions: names resolved, bodies as SymPy expressions in per-element symbols.

A `Definition` is the meaning of one `name(args; params) = expr where ...`: its body is a SymPy
expression in the arguments, the parameters and the symbols of its `Reduction`s. A reduction is an
explicit node: `s = sum_i f(x_i)` over the per-sample axes becomes a per-sample symbol `s` with its
definition, so derivatives can run reverse mode across it (`derive`). Everything else is elementwise. `where` bindings and
calls of earlier definitions are inlined (the emitter names shared subexpressions after the bindings
again). Nothing here executes user text: every SymPy object is built by a constructor from the table
in `vocabulary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Mapping, Optional

import sympy
from sympy.logic.boolalg import Boolean

from . import limits
from .errors import LossDefinitionError, LossLimitError, LossNameError, Span, did_you_mean
from .functions import onehot
from .naming import internal
from .syntax import nodes
from .vocabulary import CONSTANTS, DOMAINS, FUNCTIONS, PARAMETER_DOMAINS, REDUCTIONS, ROLES


@dataclass(frozen=True)
class Argument:
    """A tensor input, batch first.

    role: 'element' (the scores' shape, broadcasting NumPy-style against the other arguments of that
    role), 'sample' (one value per sample: shape (N,), aligned to the leading axis) or 'class' (one
    value per entry of the last axis, shared by all samples: shape (C,)). `index` labels have one axis
    fewer than the scores and are aligned to the leading axes, like 'sample'.
    """

    name: str
    domain: str
    symbol: sympy.Symbol
    role: str = "element"


@dataclass(frozen=True)
class Parameter:
    """A scalar with a default; emitted functions take it as a keyword argument."""

    name: str
    default: sympy.Expr
    symbol: sympy.Symbol
    domain: str = "real"


AXES = ("sample", "all")  # plus negative integers as text: "-1", "-2", ...


@dataclass(frozen=True)
class Reduction:
    """`symbol = kind(operand)` over `axis`, keeping the reduced axes (so it broadcasts per sample).

    kind: 'sum'; 'logsumexp' (of an operand already shifted by its 'max'); 'max' (the shift: a constant
    for differentiation, since logsumexp(x) = m + logsumexp(x - m) for any m); 'count' (how many
    elements the operand spans, also constant).
    axis: 'sample' (every axis but the batch axis), 'all' (the batch too), or '-1', '-2', ...
    """

    symbol: sympy.Symbol
    kind: str
    operand: sympy.Expr
    axis: str = "sample"


@dataclass(frozen=True)
class Definition:
    """One loss: `body` is the per-element loss l(arguments; parameters)."""

    name: str
    arguments: tuple[Argument, ...]
    parameters: tuple[Parameter, ...]
    body: sympy.Expr
    bindings: tuple[tuple[str, sympy.Expr], ...] = ()  # where-names and what they stand for
    wrt: tuple[str, ...] = ()                          # from a `wrt` clause; empty: caller decides
    reductions: tuple[Reduction, ...] = ()             # in dependency order
    text: str = ""                                     # the definition's source text
    span: Optional[Span] = field(default=None, compare=False)

    def argument(self, name: str) -> Argument:
        for argument in self.arguments:
            if argument.name == name:
                return argument
        raise KeyError(name)

    @property
    def symbols(self) -> dict[str, sympy.Symbol]:
        return {a.name: a.symbol for a in self.arguments} | {p.name: p.symbol for p in self.parameters}


Resolver = Callable[[str], Optional[Definition]]


def argument_symbol(name: str, domain: str = "real") -> sympy.Symbol:
    """The per-element symbol of an argument: real, plus what its domain lets SymPy assume."""
    return sympy.Symbol(name, **{"real": True, **dict(DOMAINS[domain].assumptions)})


def parameter_symbol(name: str, domain: str = "real") -> sympy.Symbol:
    return sympy.Symbol(name, **{"real": True, **dict(DOMAINS[domain].assumptions)})


def _number(value: Fraction) -> sympy.Expr:
    return sympy.Integer(value.numerator) if value.denominator == 1 else sympy.Rational(value.numerator, value.denominator)


_COMPARE = {"<": sympy.Lt, "<=": sympy.Le, ">": sympy.Gt, ">=": sympy.Ge, "==": sympy.Eq, "!=": sympy.Ne}


class _Scope:
    """Names visible in one right-hand side, and the earlier definitions it may call."""

    def __init__(self, values: dict[str, sympy.Expr], resolve: Resolver, source: str,
                 pending: Mapping[str, Span] | None = None, free_names: list[str] | None = None):
        self.values = values
        self.resolve = resolve
        self.source = source
        self.pending = dict(pending or {})  # bindings not yet defined: name -> where it is bound
        self.free_names = free_names        # a bare expression collects its free names here
        self.reductions: list[Reduction] = []
        self.arrays: set[sympy.Symbol] = set()  # the argument symbols (arrays); parameters are scalars

    def reduce(self, kind: str, operand: sympy.Expr, axis: str, node) -> sympy.Expr:
        """The symbol of `kind(operand)` over `axis`, made once however often it is written. The reduction
        of a constant (or of parameters only) is that value and the count of elements it spans:
        sum(c) = c n, max(c) = c, and the shifted logsumexp of 0 is log(n)."""
        if not (operand.free_symbols & (self.arrays | {r.symbol for r in self.reductions})) \
                and not operand.has(onehot) and kind != "count":
            if kind == "max":
                return operand
            count = self.reduce("count", sympy.S.One, axis, node)
            if kind == "sum":
                return operand * count
            return operand + sympy.log(count)  # logsumexp: n copies of the operand
        for r in self.reductions:
            if (r.kind, r.operand, r.axis) == (kind, operand, axis):
                return r.symbol
        short = {"logsumexp": "lse"}.get(kind, kind)
        index = sum(1 for r in self.reductions if r.kind == kind)
        symbol = sympy.Symbol(internal(f"{short}{index}"), real=True)  # never a user name
        self.reductions.append(Reduction(symbol, kind, operand, axis))
        return symbol

    def lookup(self, name: nodes.Name) -> sympy.Expr:
        if name.id in self.values:
            return self.values[name.id]
        if name.id in self.pending:
            raise LossDefinitionError(
                f"'{name.id}' is used before its binding; a 'where' binding may only use earlier ones",
                name.span, self.source)
        if name.id in CONSTANTS:
            return CONSTANTS[name.id]
        if self.free_names is not None:
            if name.id in FUNCTIONS or name.id in REDUCTIONS:
                raise LossNameError(f"'{name.id}' is a function; call it with parentheses", name.span, self.source)
            self.free_names.append(name.id)
            symbol = argument_symbol(name.id)
            self.values[name.id] = symbol
            self.arrays.add(symbol)
            return symbol
        hint = did_you_mean(name.id, list(self.values) + list(CONSTANTS))
        raise LossNameError(f"unknown name '{name.id}'{hint}", name.span, self.source)


def _lower(node, scope: _Scope):
    """One syntax node -> a SymPy expression (or a SymPy boolean for conditions)."""
    if isinstance(node, nodes.Number):
        return _number(node.value)
    if isinstance(node, nodes.Name):
        return scope.lookup(node)
    if isinstance(node, nodes.Unary):
        operand = _lower(node.operand, scope)
        if node.op == "not":
            return sympy.Not(_boolean(operand, node.operand, scope))
        return -_numeric(operand, node.operand, scope)
    if isinstance(node, nodes.Chain):
        return _lower_chain(node, scope)
    if isinstance(node, nodes.Binary):  # ^, right-associative
        base = _numeric(_lower(node.left, scope), node.left, scope)
        exponent = _numeric(_lower(node.right, scope), node.right, scope)
        _check_power(base, exponent, node, scope)
        return _defined(base ** exponent, node, scope)
    if isinstance(node, nodes.Compare):
        left = _numeric(_lower(node.left, scope), node.left, scope)
        right = _numeric(_lower(node.right, scope), node.right, scope)
        return _COMPARE[node.op](left, right)
    if isinstance(node, nodes.IfElse):
        condition = _boolean(_lower(node.condition, scope), node.condition, scope)
        then = _numeric(_lower(node.then, scope), node.then, scope)
        otherwise = _numeric(_lower(node.otherwise, scope), node.otherwise, scope)
        return sympy.Piecewise((then, condition), (otherwise, True))
    if isinstance(node, nodes.Call):
        return _lower_call(node, scope)
    raise LossDefinitionError(f"'{type(node).__name__}' cannot appear here", getattr(node, "span", None), scope.source)


def _lower_chain(node: nodes.Chain, scope: _Scope):
    """A flat run of `+ -`, `* /`, `and` or `or`, lowered in one loop (no recursion along the run)."""
    family = node.rest[0][0]
    items = [(None, node.first), *node.rest]
    if family in ("and", "or"):
        values = [_boolean(_lower(x, scope), x, scope) for _, x in items]
        return sympy.And(*values) if family == "and" else sympy.Or(*values)
    values = [(op, _numeric(_lower(x, scope), x, scope), x) for op, x in items]
    if family in ("+", "-"):
        return _defined(sympy.Add(*[-v if op == "-" else v for op, v, _ in values]), node, scope)
    factors = []
    for op, value, x in values:
        if op == "/":
            if value.is_zero:
                raise LossDefinitionError("division by zero", x.span, scope.source)
            value = 1 / value
        factors.append(value)
    return _defined(sympy.Mul(*factors), node, scope)


def _check_power(base: sympy.Expr, exponent: sympy.Expr, node, scope: _Scope) -> None:
    """A power of numbers is computed exactly by SymPy: refuse one that no float64 could hold before
    SymPy spends hours writing out 10^(10^10)."""
    if not (base.is_number and exponent.is_number) or base.is_zero:
        return
    try:
        size = float(sympy.log(abs(sympy.N(base, 20)), 10).evalf(20)) * float(sympy.N(exponent, 20))
    except (TypeError, ValueError, OverflowError):
        return
    if size > 308.3 or size < -330:
        raise LossDefinitionError(f"this power is about 10^{size:.4g}, outside the range of float64",
                                  node.span, scope.source)


def _defined(value: sympy.Expr, node, scope: _Scope) -> sympy.Expr:
    """A real, finite value, or an error at the place: log(0), sqrt(-1), (-8)^(1/3), 0^-1, a constant
    beyond float64 -- whatever SymPy can decide without sampling."""
    if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        raise LossDefinitionError("this term is undefined (infinite or not a number: log(0)? 1/0? 0^-1?)",
                                  node.span, scope.source)
    if value.is_number:
        if value.is_extended_real is False or value.has(sympy.I):
            raise LossDefinitionError("this term is a complex number; losses are real", node.span, scope.source)
        if value.is_Rational:
            magnitude = abs(value)
            if magnitude > sympy.Float("1.7976931348623157e308") or (magnitude and magnitude < sympy.Rational(1, 10**330)):
                raise LossDefinitionError("this constant is outside the range of float64", node.span, scope.source)
    elif value.has(sympy.I):
        raise LossDefinitionError("this term is complex; losses are real", node.span, scope.source)
    elif isinstance(value, sympy.Pow) and value.base.is_extended_negative and value.exp.is_integer is False:
        raise LossDefinitionError("a negative number to a fractional power is complex", node.span, scope.source)
    return value


def _numeric(value, node, scope: _Scope) -> sympy.Expr:
    if not isinstance(value, sympy.Expr):
        raise LossDefinitionError("a condition is not a number; use it in 'if ... then ... else ...'",
                                  node.span, scope.source)
    return value


def _boolean(value, node, scope: _Scope):
    if isinstance(value, sympy.Expr) or not isinstance(value, (Boolean, bool)):
        raise LossDefinitionError("expected a condition (a comparison, 'and', 'or', 'not')", node.span, scope.source)
    return value


def _positional(call: nodes.Call, scope: _Scope) -> tuple[list, dict[str, tuple[nodes.Keyword, sympy.Expr]]]:
    args, keywords = [], {}
    if len(call.groups) > 1:
        raise LossDefinitionError("';' separates parameters only in a definition's header",
                                  call.span, scope.source)
    for argument in (call.groups[0] if call.groups else ()):
        if isinstance(argument, nodes.Annotated):
            raise LossDefinitionError("a domain annotation ('x: positive') belongs in a definition's header",
                                      argument.span, scope.source)
        if isinstance(argument, nodes.Keyword):
            if argument.name.id in keywords:
                raise LossDefinitionError(f"keyword '{argument.name.id}' given twice", argument.span, scope.source)
            keywords[argument.name.id] = (argument, _numeric(_lower(argument.value, scope), argument.value, scope))
        else:
            if keywords:
                raise LossDefinitionError("a positional argument after a keyword argument",
                                          argument.span, scope.source)
            args.append(_numeric(_lower(argument, scope), argument, scope))
    return args, keywords


def _lower_call(call: nodes.Call, scope: _Scope) -> sympy.Expr:
    name = call.function.id
    if name in REDUCTIONS:
        return _lower_reduction(call, scope)
    spec = FUNCTIONS.get(name)
    if spec is not None:
        args, keywords = _positional(call, scope)
        if keywords:
            first = next(iter(keywords.values()))[0]
            raise LossDefinitionError(f"'{name}' takes no keyword arguments", first.span, scope.source)
        if len(args) < spec.min_args or (spec.max_args is not None and len(args) > spec.max_args):
            raise LossDefinitionError(f"'{name}' takes {spec.arity_text()}, got {len(args)}",
                                      call.span, scope.source)
        try:
            value = spec.build(args)
        except (ValueError, TypeError) as error:  # SymPy refusing its arguments: say where
            raise LossDefinitionError(f"'{name}' cannot take these arguments ({error})",
                                      call.span, scope.source) from None
        _check_domain(name, args, call, scope)
        return _defined(value, call, scope)
    callee = scope.resolve(name)
    if callee is None:
        hint = did_you_mean(name, list(FUNCTIONS) + list(REDUCTIONS) + _resolvable_names(scope))
        raise LossNameError(f"unknown function '{name}'{hint}", call.function.span, scope.source)
    return _inline(callee, call, scope)


_NEEDS = {  # function -> (argument test that proves it out of domain, what it needs)
    "log": (lambda x: x.is_extended_nonpositive, "a positive argument"),
    "sqrt": (lambda x: x.is_extended_negative, "a nonnegative argument"),
    "lgamma": (lambda x: x.is_zero or (x.is_integer and x.is_extended_nonpositive), "an argument that is not 0, -1, -2, ..."),
    "log1p": (lambda x: (x + 1).is_extended_nonpositive, "an argument above -1"),
}


def _check_domain(name: str, args, call: nodes.Call, scope: _Scope) -> None:
    """An argument SymPy can prove outside a function's domain (log(-y^2 - 1), sqrt(-1 - p^2)) is an error."""
    rule = _NEEDS.get(name)
    if rule is not None and rule[0](args[0]):
        raise LossDefinitionError(f"'{name}' needs {rule[1]}, and this one never is", call.span, scope.source)


def _axis(keyword: nodes.Keyword, scope: _Scope) -> str:
    node = keyword.value
    if isinstance(node, nodes.Name) and node.id in AXES:
        return node.id
    if isinstance(node, nodes.Unary) and node.op == "-" and isinstance(node.operand, nodes.Number) \
            and node.operand.value.denominator == 1 and node.operand.value > 0:
        return str(-node.operand.value.numerator)
    raise LossDefinitionError("axis must be 'all', 'sample' or a negative integer such as -1",
                              keyword.value.span, scope.source)


def _lower_reduction(call: nodes.Call, scope: _Scope) -> sympy.Expr:
    """sum, mean, logsumexp, norm, dot, softmax, log_softmax, onehot -> reduction nodes."""
    name = call.function.id
    spec = REDUCTIONS[name]
    groups = call.groups[0] if call.groups else ()
    axis_keywords = [a for a in groups if isinstance(a, nodes.Keyword)]
    positional = tuple(a for a in groups if not isinstance(a, nodes.Keyword))
    others = [k for k in axis_keywords if k.name.id != "axis"]
    if others:
        raise LossNameError(f"'{name}' takes no keyword '{others[0].name.id}' (only axis=...)",
                            others[0].name.span, scope.source)
    if len(axis_keywords) > 1:
        raise LossDefinitionError(f"'{name}' is given axis= twice", axis_keywords[1].span, scope.source)
    if name == "onehot" and axis_keywords:
        raise LossDefinitionError("onehot(y) expands along the scores' last axis; it takes no axis",
                                  axis_keywords[0].span, scope.source)
    if len(positional) != spec.arity:
        raise LossDefinitionError(f"'{name}' takes {spec.arity} argument{'s' if spec.arity > 1 else ''}, "
                                  f"got {len(positional)}", call.span, scope.source)
    if name == "onehot":
        return _onehot(positional[0], scope)
    axis = _axis(axis_keywords[0], scope) if axis_keywords else "sample"
    args, _ = _positional(nodes.Call(call.function, (positional,), call.span), scope)

    def reduce(kind, operand):
        return scope.reduce(kind, operand, axis, call)

    x = args[0]
    if name == "sum":
        return reduce("sum", x)
    if name == "mean":
        return reduce("sum", x) / reduce("count", x)
    if name == "norm":
        return sympy.sqrt(reduce("sum", x**2))
    if name == "dot":
        return reduce("sum", x * args[1])
    # logsumexp(x) = m + log(sum(exp(x - m))) with m = max(x): x - logsumexp(x) is then (x - m) - L,
    # whose rounding error is that of x - m, not of the large m + L
    shift = reduce("max", x)
    lse = shift + reduce("logsumexp", x - shift)
    if name == "logsumexp":
        return lse
    if name == "softmax":
        return sympy.exp(x - lse)
    return x - lse  # log_softmax


def _onehot(node, scope: _Scope) -> sympy.Expr:
    if not isinstance(node, nodes.Name):
        raise LossDefinitionError("onehot() takes an argument of domain 'index' by name", node.span, scope.source)
    value = scope.lookup(node)
    if not (isinstance(value, sympy.Symbol) and value.is_integer):
        raise LossDefinitionError(f"onehot({node.id}): '{node.id}' must be an argument of domain 'index' "
                                  f"(integer class labels)", node.span, scope.source)
    return onehot(value)


def _resolvable_names(scope: _Scope) -> list[str]:
    names = getattr(scope.resolve, "names", None)
    return list(names()) if callable(names) else []


def _inline(callee: Definition, call: nodes.Call, scope: _Scope) -> sympy.Expr:
    """A call of another definition: its body with our arguments in place of its own.

    Parameters not given keep the callee's defaults as constants; pass one through explicitly
    (`huber(y, p, delta = delta)`) to keep it tunable at run time.
    """
    args, keywords = _positional(call, scope)
    if len(args) != len(callee.arguments):
        names = ", ".join(a.name for a in callee.arguments)
        raise LossDefinitionError(f"'{callee.name}' takes {len(callee.arguments)} arguments ({names}), "
                                  f"got {len(args)}", call.span, scope.source)
    nesting = limits.depth(callee.body) + max((limits.depth(a) for a in args), default=0)
    if nesting > limits.MAX_EXPRESSION_DEPTH:
        raise LossLimitError(f"calling '{callee.name}' here makes the loss about {nesting} levels deep (calls "
                             f"inside calls multiply); the limit is {limits.MAX_EXPRESSION_DEPTH} "
                             f"(losscomp.limits.MAX_EXPRESSION_DEPTH)", call.span, scope.source)
    replacement = {a.symbol: value for a, value in zip(callee.arguments, args)}
    parameters = {p.name: p for p in callee.parameters}
    for key, (keyword, _) in keywords.items():
        if key not in parameters:
            hint = did_you_mean(key, parameters)
            raise LossNameError(f"'{callee.name}' has no parameter '{key}'{hint}", keyword.name.span, scope.source)
    for p in callee.parameters:
        replacement[p.symbol] = keywords[p.name][1] if p.name in keywords else p.default
    for r in callee.reductions:  # the callee's reductions, rebuilt on our arguments
        replacement[r.symbol] = scope.reduce(r.kind, r.operand.xreplace(replacement), r.axis, call)
    return callee.body.xreplace(replacement)


def _bindings(bindings: tuple[nodes.Binding, ...], scope: _Scope) -> tuple[tuple[str, sympy.Expr], ...]:
    """Lower `where` bindings in order; each may use the ones before it."""
    lowered = []
    for binding in bindings:
        name = binding.name.id
        if name in scope.values:
            raise LossDefinitionError(f"'{name}' is already defined; a binding cannot rename it",
                                      binding.name.span, scope.source)
        if nodes.mentions(binding.value, name):
            raise LossDefinitionError(f"the binding '{name}' refers to itself", binding.name.span, scope.source)
        scope.pending.pop(name, None)
        value = _numeric(_lower(binding.value, scope), binding.value, scope)
        scope.values[name] = value
        lowered.append((name, value))
    return tuple(lowered)


def _constant(node, source: str) -> sympy.Expr:
    """A parameter default: a constant expression."""
    scope = _Scope({}, lambda _: None, source)
    try:
        value = _numeric(_lower(node, scope), node, scope)
    except LossNameError:
        raise LossDefinitionError("a parameter default must be a constant number", node.span, source) from None
    if value.free_symbols or not value.is_real:
        raise LossDefinitionError("a parameter default must be a real constant", node.span, source)
    return value


def _header(header: nodes.Call, source: str) -> tuple[list[Argument], list[Parameter]]:
    """`name(arg, arg: domain, arg: domain[role], ...; param = default, param: domain = default, ...)`."""
    groups = header.groups
    if len(groups) > 2:
        raise LossDefinitionError("a header has arguments, then ';', then parameters", header.span, source)
    arguments: list[Argument] = []
    parameters: list[Parameter] = []
    seen: set[str] = set()

    def claim(name: nodes.Name):
        if name.id in seen:
            raise LossDefinitionError(f"'{name.id}' is named twice in the header", name.span, source)
        if name.id in FUNCTIONS or name.id in REDUCTIONS or name.id in CONSTANTS:
            raise LossDefinitionError(f"'{name.id}' is a built-in name; choose another", name.span, source)
        seen.add(name.id)

    def domain_of(item: nodes.Annotated, allowed) -> str:
        domain = item.domain.id
        if domain not in allowed:
            what = "a parameter" if allowed is PARAMETER_DOMAINS else "an argument"
            hint = did_you_mean(domain, allowed)
            raise LossNameError(f"unknown domain '{domain}' for {what}{hint}; known: {', '.join(allowed)}",
                                item.domain.span, source)
        return domain

    def parameter(item) -> Parameter:
        if isinstance(item, nodes.Keyword):
            name, value, domain = item.name, item.value, "real"
        else:
            if item.role is not None:
                raise LossDefinitionError("a parameter is one number: it has no shape role", item.role.span, source)
            if not isinstance(item.value, nodes.Name):
                raise LossDefinitionError("a parameter in a header must be a plain name", item.value.span, source)
            name, value, domain = item.value, item.default, domain_of(item, PARAMETER_DOMAINS)
        claim(name)
        default = _constant(value, source)
        if not _in_domain(default, domain):
            raise LossDefinitionError(f"the default {default} of '{name.id}' is not {DOMAINS[domain].doc}",
                                      value.span, source)
        return Parameter(name.id, default, parameter_symbol(name.id, domain), domain)

    def is_parameter(item) -> bool:
        return isinstance(item, nodes.Keyword) or (isinstance(item, nodes.Annotated) and item.default is not None)

    for item in (groups[0] if groups else ()):
        if is_parameter(item):
            if len(groups) == 2:
                raise LossDefinitionError("parameters with defaults go after ';'", item.span, source)
            parameters.append(parameter(item))
            continue
        if parameters:
            raise LossDefinitionError("arguments come before parameters", item.span, source)
        domain, role = "real", "element"
        if isinstance(item, nodes.Annotated):
            domain = domain_of(item, DOMAINS)
            if item.role is not None:
                role = item.role.id
                if role not in ROLES:
                    raise LossNameError(f"unknown shape role '{role}'{did_you_mean(role, ROLES)}; known: "
                                        f"{', '.join(ROLES)}", item.role.span, source)
                if domain == "index":
                    raise LossDefinitionError("index labels are aligned to the leading axes already; they take "
                                              "no shape role", item.role.span, source)
            item = item.value
        if not isinstance(item, nodes.Name):
            raise LossDefinitionError("an argument in a header must be a plain name", item.span, source)
        claim(item)
        arguments.append(Argument(item.id, domain, argument_symbol(item.id, domain), role))
    for item in (groups[1] if len(groups) == 2 else ()):
        if not is_parameter(item):
            raise LossDefinitionError("after ';' each parameter needs a default: 'name = value'",
                                      item.span, source)
        parameters.append(parameter(item))
    if not arguments:
        raise LossDefinitionError("a loss needs at least one argument", header.span, source)
    return arguments, parameters


def _in_domain(value: sympy.Expr, domain: str) -> bool:
    """Whether a constant lies in a parameter domain."""
    if domain == "positive":
        return bool(value > 0)
    if domain == "nonnegative":
        return bool(value >= 0)
    if domain == "unit":
        return bool(0 < value < 1)
    return True


def _text(source: str, span: Span) -> str:
    lines = source.splitlines()
    chunk = lines[span.line - 1:span.end_line]
    if not chunk:
        return ""
    if len(chunk) == 1:
        return chunk[0][span.column - 1:span.end_column - 1]
    chunk[0] = chunk[0][span.column - 1:]
    chunk[-1] = chunk[-1][:span.end_column - 1]
    return "\n".join(chunk)


def _check_wrt(wrt: tuple[nodes.Name, ...], arguments: list[Argument], source: str) -> tuple[str, ...]:
    names = [a.name for a in arguments]
    for name in wrt:
        if name.id not in names:
            raise LossNameError(f"'wrt {name.id}': not an argument{did_you_mean(name.id, names)}",
                                name.span, source)
    if len({n.id for n in wrt}) != len(wrt):
        raise LossDefinitionError("a target is named twice in 'wrt'", wrt[0].span, source)
    return tuple(n.id for n in wrt)


def lower_definition(node: nodes.Definition, resolve: Resolver, source: str) -> Definition:
    name = node.header.function.id
    if name in FUNCTIONS or name in REDUCTIONS:
        raise LossDefinitionError(f"'{name}' is a built-in function; choose another name",
                                  node.header.function.span, source)
    arguments, parameters = _header(node.header, source)
    values = {a.name: a.symbol for a in arguments} | {p.name: p.symbol for p in parameters}
    pending = {b.name.id: b.name.span for b in node.bindings}
    scope = _Scope(values, resolve, source, pending)
    scope.arrays = {a.symbol for a in arguments}
    bindings = _bindings(node.bindings, scope)
    body = _numeric(_lower(node.body, scope), node.body, scope)
    wrt = _check_wrt(node.wrt, arguments, source)
    _check_index_arguments(arguments, body, scope.reductions, node.span, source)
    return Definition(name, tuple(arguments), tuple(parameters), body, bindings, wrt,
                      tuple(scope.reductions), _text(source, node.span), node.span)


def _check_index_arguments(arguments, body, reductions, span, source) -> None:
    """An `index` argument holds labels, not numbers: it may only appear as onehot(y)."""
    exprs = [body, *(r.operand for r in reductions)]
    for argument in arguments:
        if argument.domain != "index":
            continue
        bare = [e.replace(onehot, lambda _: sympy.S.One) for e in exprs]
        if any(argument.symbol in e.free_symbols for e in bare):
            raise LossDefinitionError(f"'{argument.name}' holds class indices (domain index); "
                                      f"use it through onehot({argument.name})", span, source)


def lower_bare(node: nodes.Bare, resolve: Resolver, source: str, *, name: str = "loss",
               parameters: Mapping[str, float] | None = None) -> Definition:
    """A bare expression: free names become arguments in order of appearance, except `parameters`."""
    parameters = dict(parameters or {})
    params = [Parameter(p, _number(Fraction(str(v))), parameter_symbol(p)) for p, v in parameters.items()]
    free: list[str] = []
    scope = _Scope({p.name: p.symbol for p in params}, resolve, source,
                   {b.name.id: b.name.span for b in node.bindings}, free_names=free)
    bindings = _bindings(node.bindings, scope)
    body = _numeric(_lower(node.body, scope), node.body, scope)
    arguments = [Argument(n, "real", argument_symbol(n)) for n in free]
    if not arguments:
        raise LossDefinitionError("the expression has no free names to take as arguments", node.span, source)
    wrt = _check_wrt(node.wrt, arguments, source)
    return Definition(name, tuple(arguments), tuple(params), body, bindings, wrt, tuple(scope.reductions),
                      source.strip(), node.span)


def lower_module(module: nodes.Module, resolve: Resolver, *, bare_name: str = "loss",
                 parameters: Mapping[str, float] | None = None) -> list[Definition]:
    """Every definition of a source, in order; each may call the ones before it (then `resolve`)."""
    if module.bare is not None:
        return [lower_bare(module.bare, resolve, module.source, name=bare_name, parameters=parameters)]
    lowered: dict[str, Definition] = {}

    def local_first(name: str) -> Optional[Definition]:
        return lowered.get(name) or resolve(name)

    local_first.names = lambda: list(lowered) + _resolvable_names(_Scope({}, resolve, ""))
    result = []
    for node in module.definitions:
        definition = lower_definition(node, local_first, module.source)
        if definition.name in lowered:
            raise LossDefinitionError(f"'{definition.name}' is defined twice", node.header.function.span,
                                      module.source)
        lowered[definition.name] = definition
        result.append(definition)
    return result
