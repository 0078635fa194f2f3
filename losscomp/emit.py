"""The emitted module: header, imports, helpers and functions, as deterministic text.

Each public function computes only what it returns: its outputs go through `sympy.cse` together,
shared subexpressions become named lines (`e` after a `where` binding, `abs_e` for a function of a
named value, `t0`, `t1`, ... otherwise), and the last line reduces with `_reduce` / `_to_target`.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Sequence

import sympy

from . import __version__, display
from .backends.base import ArrayPrinterMixin, Backend
from .canonical import KINK_CONVENTION


@dataclass(frozen=True)
class Spec:
    """Everything the template needs to know about one compiled loss."""

    name: str
    source: str
    arguments: tuple[str, ...]
    targets: tuple[str, ...]
    parameters: tuple[tuple[str, float], ...]
    reduction: str
    value: sympy.Expr                               # stabilized, per element
    gradient: tuple[sympy.Expr, ...]
    hessian: tuple[tuple[sympy.Expr, ...], ...]
    bindings: tuple[tuple[str, sympy.Expr], ...]
    display_value: str
    display_gradient: tuple[str, ...]
    display_hessian: tuple[tuple[str, ...], ...]

    @property
    def class_name(self) -> str:
        return "".join(part[:1].upper() + part[1:] for part in self.name.split("_") if part) + "Loss"

    @property
    def keyword_params(self) -> str:
        """`, *, tau=0.5` for a signature ('' without parameters)."""
        if not self.parameters:
            return ""
        return ", *, " + ", ".join(f"{n}={_literal(v)}" for n, v in self.parameters)

    @property
    def pass_params(self) -> str:
        """`, tau=tau` to pass parameters on."""
        return "".join(f", {n}={n}" for n, _ in self.parameters)


def _literal(value: float) -> str:
    return repr(float(value))


class _Block:
    """Statements that compute some per-element outputs, with shared subexpressions named."""

    def __init__(self, spec: Spec, printer: ArrayPrinterMixin, outputs: Sequence[sympy.Expr]):
        self.spec = spec
        self.printer = printer
        taken = set(spec.arguments) | {n for n, _ in spec.parameters} | {"v", "X", "w"}
        symbols = {**{a: sympy.Symbol(a, real=True) for a in spec.arguments}}
        # where-bindings by name, each in terms of the earlier ones
        named: list[tuple[sympy.Symbol, sympy.Expr]] = []
        for index, (name, value) in enumerate(spec.bindings):
            if value.is_Atom or name in taken:
                continue
            value = display.with_names(value, spec.bindings[:index])
            named.append((sympy.Symbol(name, real=True), value))
            taken.add(name)
        outputs = [display.with_names(o, spec.bindings) for o in outputs]
        used = set().union(*(o.free_symbols for o in outputs)) if outputs else set()
        lines: list[tuple[sympy.Symbol, sympy.Expr]] = []
        for symbol, value in reversed(named):   # keep a binding if anything later uses it
            if symbol in used:
                lines.append((symbol, value))
                used |= value.free_symbols
        lines.reverse()
        replacements, reduced = sympy.cse(outputs, symbols=self._fresh(taken), order="canonical")
        renamed: dict[sympy.Symbol, sympy.Symbol] = {}
        for symbol, value in replacements:
            value = value.xreplace(renamed)
            better = self._name_for(value, taken)
            if better is not None:
                renamed[symbol] = sympy.Symbol(better, real=True)
                taken.add(better)
                symbol = renamed[symbol]
            lines.append((symbol, value))
        self.lines = lines
        self.outputs = [r.xreplace(renamed) for r in reduced]
        del symbols

    @staticmethod
    def _fresh(taken: set[str]):
        index = 0
        while True:
            name = f"t{index}"
            index += 1
            if name not in taken:
                taken.add(name)
                yield sympy.Symbol(name, real=True)

    @staticmethod
    def _name_for(value: sympy.Expr, taken: set[str]) -> str | None:
        """`abs_e` for abs(e), `sigmoid_z` for sigmoid(z): a function of one named value."""
        if isinstance(value, sympy.Function) and len(value.args) == 1 and value.args[0].is_Symbol:
            inner = value.args[0].name
            if inner.startswith("t") and inner[1:].isdigit():
                return None
            name = f"{type(value).__name__.lower()}_{inner}"
            if name.isidentifier() and not keyword.iskeyword(name) and name not in taken:
                return name
        return None

    def render(self, indent: str = "    ") -> list[str]:
        out = []
        for symbol, value in self.lines:
            if not isinstance(value, sympy.Expr) or self.printer._is_tensor(value):
                self.printer.tensors.add(symbol.name)
            out.append(f"{indent}{symbol.name} = {self.printer.doprint(value)}")
        return out

    def printed_outputs(self) -> list[str]:
        return [self.printer.doprint(o) for o in self.outputs]


def _indent_doc(text: str, indent: str = "    ") -> str:
    return "\n".join((indent + line) if line else "" for line in text.splitlines())


class ModuleWriter:
    """Writes one module for one backend."""

    def __init__(self, spec: Spec, backend: Backend):
        self.spec = spec
        self.backend = backend
        self.helpers: set[str] = set()
        self.uses_math = False

    def _printer(self) -> ArrayPrinterMixin:
        tensors = set(self.spec.arguments) | {b for b, _ in self.spec.bindings}
        return self.backend.printer(tensors=tensors, reference=self.spec.targets[0])

    def _function(self, name: str, doc: str, outputs: Sequence[sympy.Expr], result: str,
                  extra_args: str = "") -> str:
        """`def name(args): <lines>; return result.format(*printed outputs)`."""
        printer = self._printer()
        block = _Block(self.spec, printer, outputs)
        body = block.render()
        printed = block.printed_outputs()
        self.helpers |= printer.helpers_used
        self.uses_math |= printer.uses_math
        args = ", ".join(self.spec.arguments) + extra_args
        lines = [f"def {name}({args}{self.spec.keyword_params}):", f'    """{doc}"""', *body,
                 f"    return {result.format(*printed, args=', '.join(self.spec.arguments))}"]
        return "\n".join(lines)

    def functions(self) -> list[str]:
        s = self.spec
        args = ", ".join(s.arguments)
        targets = s.targets
        k = len(targets)
        what = {"mean": "the mean over all elements", "sum": "the sum over all elements",
                "none": "every element (no reduction)"}[s.reduction]
        of = "d(sum of the elements)" if s.reduction == "none" else "d loss"

        def to_target(index: int, slot: int) -> str:
            return f"_to_target({{{slot}}}, {targets[index]}, {{args}})"

        def tupled(items: list[str]) -> str:
            return items[0] if len(items) == 1 else "(" + ", ".join(items) + ")"

        out = [self._function("_elements", f"Per-element loss l({args}).", [s.value], "{0}")]
        out.append(f"def loss({args}{s.keyword_params}):\n"
                   f'    """The loss: {what} of l."""\n'
                   f"    return _reduce(_elements({args}{s.pass_params}), {args})")
        grads = [to_target(i, i) for i in range(k)]
        out.append(self._function("grad", f"{of} / d{', d'.join(targets)}: shaped like the target"
                                  + ("s." if k > 1 else "."), list(s.gradient), tupled(grads)))
        out.append(self._function("value_and_grad", "(loss, grad) sharing their work.",
                                  [s.value, *s.gradient],
                                  "_reduce({0}, {args}), " + tupled([to_target(i, i + 1) for i in range(k)])))
        flat = [s.hessian[i][j] for i in range(k) for j in range(k)]
        if k == 1:
            out.append(self._function("hessian", f"Diagonal of the Hessian by {targets[0]} (it is diagonal), "
                                      "shaped like the target.", flat, to_target(0, 0)))
            out.append(self._function("hvp", "Hessian-vector product H v, shaped like the target.",
                                      flat, f"_to_target({{0}} * v, {targets[0]}, {{args}})", ", v"))
        else:
            rows = ["(" + ", ".join(to_target(i, i * k + j) for j in range(k)) + ")" for i in range(k)]
            out.append(self._function(
                "hessian", "Hessian blocks: entry [i][j] is the diagonal of d2 loss / dt_i dt_j.",
                flat, "(" + ", ".join(rows) + ")"))
            products = []
            for i in range(k):
                terms = " + ".join(f"{{{i * k + j}}} * v[{j}]" for j in range(k))
                products.append(f"_to_target({terms}, {targets[i]}, {{args}})")
            out.append(self._function("hvp", "Hessian-vector product; v is a tuple, one entry per target.",
                                      flat, "(" + ", ".join(products) + ")", ", v"))
        if k == 1:
            out.append(self._newton())
        return out

    def _newton(self) -> str:
        s = self.spec
        target = s.targets[0]
        others = [a for a in s.arguments if a != target]
        call = ", ".join("_matvec(X, w)" if a == target else a for a in s.arguments)
        self.helpers |= {"_matvec", "_weighted_gram"}
        head = ", ".join(["X", *others, "w"])
        return (f"def newton_hessian({head}{s.keyword_params}):\n"
                f'    """Hessian in w of the loss of the linear model {target} = X @ w: X^T diag(l\'\') X."""\n'
                f"    return _weighted_gram(X, hessian({call}{s.pass_params}))")

    def header(self) -> str:
        s = self.spec
        lines = [f"{s.name}: generated by losscomp {__version__} for {self.backend.name}. Do not edit;",
                 "regenerate it from the source instead.", "", "Source:", _indent_doc(s.source), "",
                 f"Per element, with respect to {', '.join(s.targets)}:",
                 f"    loss      l = {s.display_value}"]
        for t, g in zip(s.targets, s.display_gradient):
            lines.append(f"    gradient  dl/d{t} = {g}")
        for i, t in enumerate(s.targets):
            for j, u in enumerate(s.targets):
                if j >= i:
                    wrt = f"d{t}^2" if i == j else f"d{t} d{u}"
                    lines.append(f"    Hessian   d2l/{wrt} = {s.display_hessian[i][j]}")
        lines += ["", f"Reduction: {s.reduction}"
                  + (" over every element; grad, hessian and hvp carry the 1/N." if s.reduction == "mean" else "."),
                  "Inputs broadcast against each other; results take the dtype of the inputs.",
                  "Kinks: " + KINK_CONVENTION + ".", *self.backend.notes]
        wrapped = []
        for line in lines:
            wrapped.extend(_wrap(line))
        return '"""' + "\n".join(wrapped) + '\n"""'

    def write(self) -> str:
        functions = self.functions()
        extras = self.backend.extras(self.spec)
        helpers = [self.backend.helpers[h].strip("\n") for h in sorted(self.helpers)]
        imports = (["import math"] if self.uses_math or any("math." in h for h in helpers) else [])
        imports += list(self.backend.imports)
        public = ["loss", "grad", "value_and_grad", "hessian", "hvp"]
        if len(self.spec.targets) == 1:
            public.append("newton_hessian")
        constants = [f"NAME = {self.spec.name!r}", f"ARGUMENTS = {tuple(self.spec.arguments)!r}",
                     f"TARGETS = {tuple(self.spec.targets)!r}",
                     "PARAMETERS = {" + ", ".join(f"{n!r}: {_literal(v)}" for n, v in self.spec.parameters) + "}",
                     f"REDUCTION = {self.spec.reduction!r}"]
        reductions = [chunk.strip("\n") for chunk in
                      re.split(r"\n\s*\n(?=def )", self.backend.reductions[self.spec.reduction])]
        parts = [self.header(), "\n".join(imports), "\n".join(constants), *reductions, *helpers, *functions]
        if extras:
            parts.append(extras.strip("\n"))
        return "\n\n\n".join(parts) + "\n"


def _wrap(line: str, width: int = 100) -> list[str]:
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 4)
    out, current = [], ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = indent + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return out


def emit(spec: Spec, backend: Backend) -> str:
    """The standalone module text for `backend`."""
    return ModuleWriter(spec, backend).write()
