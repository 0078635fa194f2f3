"""The pipeline behind `losscomp.compile`: text -> definitions -> derivatives -> stable forms -> source.

    parse (syntax) -> lower (ir) -> stabilize -> derive -> stabilize -> emit (backends) -> load (runtime)
"""

from __future__ import annotations

import importlib
import keyword
import math
import numbers
import types
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import sympy

from . import catalog, display, emit, runtime
from .backends.base import Backend
from .derive import Derivation, Program, closed_forms, derive
from .errors import LossError, LossNameError, LossOptionError, did_you_mean
from .ir import Definition, Parameter, lower_module
from .native import native
from .stabilize import guard, logsumexp_reductions, stabilize
from .syntax import nodes, parse

BACKENDS = ("numpy", "torch", "tensorflow", "jax")
REDUCTIONS = ("mean", "sum", "none")
BOOSTING = ("xgboost", "lightgbm")     # build() targets that are objectives, not emitted modules
_ALIASES = {"np": "numpy", "pytorch": "torch", "tf": "tensorflow", "keras": "tensorflow"}


def backend(name: str) -> Backend:
    """The backend called `name` (imported on first use, so unused frameworks cost nothing)."""
    if not isinstance(name, str):
        raise LossOptionError(f"a backend is named by a string ({', '.join(BACKENDS)}), not {name!r}")
    key = _ALIASES.get(name, name)
    if key not in BACKENDS:
        raise LossOptionError(f"unknown backend '{name}'{did_you_mean(name, BACKENDS)}; "
                              f"choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"losscomp.backends.{key}").BACKEND


@dataclass(frozen=True)
class CompiledLoss:
    """A loss definition with its symbolic derivatives, ready to emit for any backend."""

    definition: Definition
    derivation: Derivation
    reduction: str
    rewrites: bool = True  # False: print the derivatives as derived, without the stable rewrites

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.derivation.targets)

    @property
    def value(self) -> sympy.Expr:
        """Per-element loss l."""
        return self.derivation.value

    @property
    def gradient(self) -> sympy.Expr | tuple[sympy.Expr, ...]:
        """dl/dt per element (a tuple for several targets)."""
        g = self.derivation.gradient
        return g[0] if len(g) == 1 else g

    @property
    def hessian(self) -> sympy.Expr | tuple[tuple[sympy.Expr, ...], ...]:
        """d2l/dt2 per element (the diagonal of the Hessian), or the blocks for several targets."""
        h = self.derivation.hessian
        return h[0][0] if len(h) == 1 else h

    def _named(self, expr: sympy.Expr) -> sympy.Expr:
        return display.with_names(expr, self.definition.bindings)

    def _closed_value(self) -> sympy.Expr:
        """F with its reductions written as sum(...), logsumexp(...) for people."""
        return self.derivation.value.xreplace(closed_forms(self.definition.reductions))

    def plain(self) -> dict[str, object]:
        """Loss, gradient and Hessian as plain text, with the `where` names put back."""
        d = self.derivation
        if d.elementwise:
            hessian = tuple(tuple(display.plain(self._named(h)) for h in row) for row in d.hessian)
        else:
            hessian = tuple(tuple(display.structured(h) for h in row) for row in d.hessian)
        return {
            "loss": display.plain(self._named(self._closed_value())),
            "gradient": tuple(display.plain(self._named(g)) for g in d.gradient),
            "hessian": hessian,
        }

    def describe(self) -> list[str]:
        """The loss, gradient and Hessian, one line each, as `derive` and module headers show them."""
        text = self.plain()
        per = "per element" if self.derivation.elementwise else "per sample"
        lines = [f"{self.name}({', '.join(a.name for a in self.definition.arguments)}), {per}, "
                 f"with respect to {', '.join(self.targets)}:",
                 f"    loss      l = {text['loss']}"]
        for t, g in zip(self.targets, text["gradient"]):
            lines.append(f"    gradient  dl/d{t} = {g}")
        for i, t in enumerate(self.targets):
            for j, u in enumerate(self.targets):
                if j >= i:
                    den = f"d{t}^2" if i == j else f"d{t} d{u}"
                    lines.append(f"    Hessian   d2l/{den} = {text['hessian'][i][j]}")
        return lines

    def latex(self) -> str:
        """Loss, gradient and Hessian as LaTeX equations, one per line."""
        d = self.derivation
        lines = [rf"\ell = {display.latex(self._named(self._closed_value()))}"]
        for t, g in zip(d.targets, d.gradient):
            lines.append(rf"\frac{{\partial \ell}}{{\partial {sympy.latex(t)}}} = {display.latex(self._named(g))}")
        for i, ti in enumerate(d.targets):
            for j, tj in enumerate(d.targets):
                if j < i:
                    continue
                den = (rf"\partial {sympy.latex(ti)}^{{2}}" if i == j
                       else rf"\partial {sympy.latex(ti)}\,\partial {sympy.latex(tj)}")
                h = d.hessian[i][j]
                if d.elementwise:
                    body = display.latex(self._named(h))
                else:
                    body = r"\operatorname{diag}\left(" + display.latex(h.diagonal) + r"\right)" + "".join(
                        rf" + \left({display.latex(u)}\right)\left({display.latex(a)}\right)^{{T}}" for u, a in h.outer)
                lines.append(rf"\frac{{\partial^{{2}} \ell}}{{{den}}} = {body}")
        return "\n".join(lines)

    def spec(self) -> emit.Spec:
        """The emitter's input: stable forms, native forms and guards, computed once per loss."""
        cached = self.__dict__.get("_spec")
        if cached is None:
            cached = self._make_spec()
            object.__setattr__(self, "_spec", cached)
        return cached

    def _make_spec(self) -> emit.Spec:
        d = self.derivation

        arrays = frozenset({a.symbol for a in self.definition.arguments} | {s.symbol for s in d.forward.steps}
                           | {s.symbol for s in d.backward.steps} | {s.symbol for s in d.tangent.steps}
                           | set(d.tangent_inputs))

        def printable(expr: sympy.Expr) -> sympy.Expr:
            return guard(native(stabilize(expr)), arrays) if self.rewrites else expr

        def stable(program: Program) -> Program:
            return Program(tuple(replace(step, expr=printable(step.expr)) for step in program.steps),
                           tuple(printable(o) for o in program.outputs))

        return emit.Spec(
            name=self.name, source=self.definition.text,
            arguments=tuple(a.name for a in self.definition.arguments), targets=self.targets,
            parameters=tuple((p.name, float(p.default)) for p in self.definition.parameters),
            reduction=self.reduction, value=printable(d.value), forward=stable(d.forward),
            backward=stable(d.backward), tangent=stable(d.tangent),
            tangent_inputs=tuple(v.name for v in d.tangent_inputs),
            diagonal=tuple(tuple(printable(h) for h in row) for row in d.diagonal),
            context=d.context, tensors=d.tensors, bindings=self.definition.bindings,
            display=tuple(self.describe()[1:]),
            roles=tuple((a.name, "index" if a.domain == "index" else a.role, a.domain)
                        for a in self.definition.arguments),
            symbols=tuple((a.name, a.symbol) for a in self.definition.arguments)
            + tuple((p.name, p.symbol) for p in self.definition.parameters))

    def emit(self, backend_name: str = "numpy") -> str:
        """Standalone Python source for `backend_name`: 'numpy', 'torch', 'tensorflow' or 'jax'."""
        return emit.emit(self.spec(), backend(backend_name))

    def build(self, backend_name: str = "numpy", **options):
        """The emitted source loaded as a module; for 'xgboost' or 'lightgbm', a custom objective and
        metric for that library (`losscomp.boosting.build`, which takes the `options`)."""
        if not isinstance(backend_name, str):
            backend(backend_name)                        # raises: a backend is named by a string
        if backend_name in BOOSTING:                 # a later stage, loaded on first use
            return importlib.import_module("losscomp.boosting").build(self, backend_name, **options)
        key = _ALIASES.get(backend_name, backend_name)
        if key not in BACKENDS:
            choices = BACKENDS + BOOSTING
            raise LossOptionError(f"unknown backend '{backend_name}'{did_you_mean(str(backend_name), choices)}; "
                                  f"choose one of {', '.join(choices)}")
        if options:
            raise LossOptionError(f"build('{backend_name}') takes no options (got {', '.join(sorted(options))})")
        source = self.emit(backend_name)
        return runtime.load(source, f"{self.name}_{key}")

    # -- linear combinations (losscomp.combine): 0.7 * mse + 0.3 * "underestimation" ----------------
    __array_ufunc__ = None  # a NumPy number on the left defers to the operators below

    def _operand(self, other):
        """A catalog name or loss-language text beside a loss is compiled with the loss's options."""
        if isinstance(other, str):
            return compile(other, reduction=self.reduction, rewrites=self.rewrites)
        return other

    def __add__(self, other):
        from . import combine
        return combine.add(self, self._operand(other))

    def __radd__(self, other):
        from . import combine
        return combine.add(self._operand(other), self)

    def __sub__(self, other):
        from . import combine
        return combine.add(self, self._operand(other), -1)

    def __rsub__(self, other):
        from . import combine
        return combine.add(self._operand(other), self, -1)

    def __mul__(self, factor):
        from . import combine
        return combine.scale(self, factor)

    __rmul__ = __mul__

    def __truediv__(self, divisor):
        from . import combine
        return combine.scale(self, divisor, divide=True)

    def __neg__(self):
        from . import combine
        return combine.scale(self, -1)


def _definitions(source: str, name: str | None,
                 params: Mapping[str, float] | None) -> tuple[list[Definition], bool]:
    """The definitions of a source (or the catalog loss it names), and whether it was a bare expression
    (whose parameters `params` already declared)."""
    if not isinstance(source, str):
        raise LossOptionError(f"a loss source is text or a catalog name, not {type(source).__name__}")
    text = source.strip()
    if text.isidentifier() and catalog.lookup(text) is not None:
        return [catalog.lookup(text)], False
    module = parse(source)
    lone = module.bare
    if lone is not None and isinstance(lone.body, nodes.Name) and not lone.bindings and not lone.wrt:
        # a lone name is a catalog lookup, never the identity loss
        found = catalog.lookup(lone.body.id)
        if found is None:
            shown = lone.body.id if len(lone.body.id) <= 60 else lone.body.id[:57] + "..."
            raise LossNameError(f"unknown loss '{shown}'{did_you_mean(lone.body.id, catalog.names())} "
                                f"(a lone name is a catalog loss: 'losscomp list' shows them)")
        return [found], False
    bare = module.bare is not None
    return lower_module(module, catalog.lookup, bare_name=name or "custom",
                        parameters=params if bare else None), bare


def _identifier(value: object, what: str) -> str:
    """A name given through the API: it becomes a name in emitted Python, so it must be an identifier."""
    if not isinstance(value, str) or not value.isidentifier() or keyword.iskeyword(value):
        raise LossOptionError(f"{what} must be a Python identifier that is not a keyword, not {value!r}")
    return value


def _finite(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise LossOptionError(f"{what} must be a finite real number, not {value!r}")
    return float(value)


def _check_options(name, wrt, params) -> None:
    """Types and values of compile()'s options, before any of them reaches the compiler."""
    if name is not None:
        _identifier(name, "name")
    if wrt is not None:
        for target in ([wrt] if isinstance(wrt, str) else wrt if isinstance(wrt, (list, tuple)) else [wrt]):
            _identifier(target, "a wrt target")
    if params is not None:
        if not isinstance(params, Mapping):
            raise LossOptionError(f"params must be a mapping of parameter names to numbers, not {type(params).__name__}")
        for key, value in params.items():
            _identifier(key, "a parameter name")
            _finite(value, f"parameter '{key}'")


def _with_params(definition: Definition, params: Mapping[str, float] | None) -> Definition:
    if not params:
        return definition
    known = {p.name: p for p in definition.parameters}
    updated = []
    for key in params:
        if key not in known:
            hint = did_you_mean(key, known)
            have = ", ".join(known) or "none"
            raise LossNameError(f"'{definition.name}' has no parameter '{key}'{hint} (its parameters: {have})")
    for p in definition.parameters:
        if p.name in params:
            value = _finite(params[p.name], f"parameter '{p.name}'")
            p = Parameter(p.name, sympy.Rational(str(value)), p.symbol)
        updated.append(p)
    return replace(definition, parameters=tuple(updated))


def _targets(definition: Definition, wrt: str | Sequence[str] | None) -> tuple[sympy.Symbol, ...]:
    names = [a.name for a in definition.arguments]
    if wrt is None:
        chosen = list(definition.wrt) or [names[1] if len(names) > 1 else names[0]]
    else:
        chosen = [wrt] if isinstance(wrt, str) else list(wrt)
        if not chosen:
            raise LossOptionError("wrt names no target")
    for target in chosen:
        if target not in names:
            raise LossNameError(f"'{target}' is not an argument of '{definition.name}'"
                                f"{did_you_mean(target, names)} (its arguments: {', '.join(names)})")
    if len(set(chosen)) != len(chosen):
        raise LossOptionError("a target is named twice in wrt")
    return tuple(definition.argument(t).symbol for t in chosen)


def compile(source: str, name: str | None = None, wrt: str | Sequence[str] | None = None,
            reduction: str = "mean", params: Mapping[str, float] | None = None, *,
            rewrites: bool = True) -> CompiledLoss:
    """Compile loss-language text (or a catalog name) into a `CompiledLoss`.

    `name` picks a definition (default: the last one; for a bare expression, its name). `wrt` names
    the target(s) (default: the definition's `wrt` clause, else its second argument). `params` sets
    parameter defaults (for a bare expression it also says which free names are parameters).
    `rewrites=False` skips the stable rewrites of `losscomp.stabilize` (to measure what they buy).
    """
    if reduction not in REDUCTIONS:
        raise LossOptionError(f"unknown reduction '{reduction}'{did_you_mean(str(reduction), REDUCTIONS)}; "
                              f"choose one of {', '.join(REDUCTIONS)}")
    _check_options(name, wrt, params)
    definitions, bare = _definitions(source, name, params)
    if name is None or (len(definitions) == 1 and definitions[0].name == name):
        chosen = definitions[-1]
    else:
        matches = [d for d in definitions if d.name == name]
        if not matches:
            available = [d.name for d in definitions]
            raise LossNameError(f"no definition named '{name}'{did_you_mean(name, available)} "
                                f"(defined: {', '.join(available)})")
        chosen = matches[0]
    chosen = chosen if bare else _with_params(chosen, params)
    if rewrites:
        chosen = logsumexp_reductions(chosen)
    targets = _targets(chosen, wrt)
    try:
        value = stabilize(chosen.body) if rewrites else chosen.body
        derivation = derive(chosen, value, targets)
    except LossError as error:
        raise error.with_source(chosen.text) from None
    return CompiledLoss(chosen, derivation, reduction, rewrites)
