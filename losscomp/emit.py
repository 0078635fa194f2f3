"""The emitted module: header, imports, helpers and functions, as deterministic text.

Each public function prints one program of `derive` (forward, backward or tangent), keeping only
the steps its outputs need. The expressions of all its steps go through `sympy.cse` together; a
shared subexpression is printed just before the first step that uses it, named after a `where`
binding (`e`), a function of a named value (`abs_e`), or `t0`, `t1`, ... Reductions print as
`_sum`, `_logsumexp`, `_count` (kept dims), adjoints of broadcasting as `_collect`.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from typing import Sequence

import sympy

from . import display
from ._version import __version__
from .backends.base import ArrayPrinterMixin, Backend
from .canonical import KINK_CONVENTION
from .derive import Program, Step


@dataclass(frozen=True)
class Spec:
    """Everything the template needs to know about one compiled loss (expressions already stable)."""

    name: str
    source: str
    arguments: tuple[str, ...]
    targets: tuple[str, ...]
    parameters: tuple[tuple[str, float], ...]
    reduction: str
    value: sympy.Expr                         # F, in arguments and reduction symbols
    forward: Program
    backward: Program
    tangent: Program
    tangent_inputs: tuple[str, ...]           # names of v per target
    diagonal: tuple[tuple[sympy.Expr, ...], ...]  # elementwise losses: d2F/dt_i dt_j; else ()
    context: tuple[str, ...]                  # arrays whose broadcast shape is F's shape
    tensors: frozenset                        # names bound to arrays
    bindings: tuple[tuple[str, sympy.Expr], ...]
    display: tuple[str, ...]                  # header lines: loss, gradient, Hessian

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

    @property
    def elementwise(self) -> bool:
        return bool(self.diagonal)

    @property
    def kind(self) -> str:
        """'elementwise' (Hessian diagonal), 'per_sample' (blocks per sample) or 'whole_batch'."""
        return "elementwise" if self.elementwise else ("per_sample" if self.per_sample else "whole_batch")

    @property
    def squeeze(self) -> str | None:
        """The axes every loss value was reduced over (kept as size 1), when they are the same for all:
        'sample', 'all' or '-1', ...; None for a loss with elementwise terms."""
        if any(c in self.arguments for c in self.context):
            return None
        axes = {step.axis for step in self.forward.steps if step.symbol.name in self.context}
        return axes.pop() if len(axes) == 1 else None

    @property
    def per_sample(self) -> bool:
        """True unless some reduction spans the batch axis (then the Hessian is one whole matrix)."""
        return all(step.axis != "all" for step in self.forward.steps)


def _literal(value: float) -> str:
    return repr(float(value))


def _needed(steps: Sequence[Step], outputs: Sequence[sympy.Expr]) -> list[Step]:
    """The steps the outputs depend on, in program order."""
    wanted = set().union(*(o.free_symbols for o in outputs)) if outputs else set()
    keep = []
    for step in reversed(steps):
        if step.symbol in wanted:
            keep.append(step)
            wanted |= step.expr.free_symbols | set(step.context)
            if step.like is not None:
                wanted.add(step.like)
    keep.reverse()
    return keep


class _Body:
    """The statements of one function: program steps with their shared subexpressions named."""

    def __init__(self, spec: Spec, printer: ArrayPrinterMixin, steps: Sequence[Step], outputs: Sequence):
        self.spec = spec
        self.printer = printer
        steps = _needed(steps, outputs)
        taken = set(spec.arguments) | {n for n, _ in spec.parameters} | set(spec.tensors) | {"v", "X", "w"}
        taken |= {s.symbol.name for s in steps}
        # where-bindings by name, each in terms of the earlier ones
        named: list[tuple[sympy.Symbol, sympy.Expr]] = []
        for index, (name, value) in enumerate(spec.bindings):
            if value.is_Atom or name in taken:
                continue
            named.append((sympy.Symbol(name, real=True), display.with_names(value, spec.bindings[:index])))
            taken.add(name)
        exprs = [display.with_names(s.expr, spec.bindings) for s in steps]
        outs = [display.with_names(o, spec.bindings) for o in outputs]
        replacements, reduced = sympy.cse(exprs + outs, symbols=self._fresh(taken), order="canonical")
        renamed: dict[sympy.Symbol, sympy.Symbol] = {}
        pending: list[tuple[sympy.Symbol, sympy.Expr]] = []
        for symbol, value in replacements:
            value = value.xreplace(renamed)
            better = self._name_for(value, taken)
            if better is not None:
                renamed[symbol] = sympy.Symbol(better, real=True)
                taken.add(better)
                symbol = renamed[symbol]
            pending.append((symbol, value))
        reduced = [r.xreplace(renamed) for r in reduced]
        self.lines: list[str] = []
        done: set[sympy.Symbol] = set()
        available = [(s, v) for s, v in named] + pending

        def need(expr):
            """Emit, in order, the bindings and shared subexpressions `expr` uses."""
            wanted = set(expr.free_symbols)
            grew = True
            while grew:
                grew = False
                for symbol, value in available:
                    if symbol in wanted and not (value.free_symbols <= wanted):
                        wanted |= value.free_symbols
                        grew = True
            for symbol, value in available:
                if symbol in wanted and symbol not in done:
                    done.add(symbol)
                    self._assign(symbol.name, self.printer.doprint(value), value)

        for step, expr in zip(steps, reduced[:len(steps)]):
            need(expr)
            self._assign(step.symbol.name, self._print_step(step, expr), None, tensor=True)
        self.outputs = []
        for out in reduced[len(steps):]:
            need(out)
            self.outputs.append(self.printer.doprint(out))

    def _assign(self, name: str, text: str, value, tensor: bool = False) -> None:
        if tensor or value is None or not isinstance(value, sympy.Expr) or self.printer._is_tensor(value):
            self.printer.tensors.add(name)
        self.lines.append(f"    {name} = {text}")

    def _print_step(self, step: Step, expr: sympy.Expr) -> str:
        text = self.printer.doprint(expr)
        axis = repr(step.axis) if not step.axis.lstrip("-").isdigit() else step.axis
        context = ", ".join(s.name for s in step.context)
        if step.op == "sum":
            return f"_sum({text}, {axis})"
        if step.op == "logsumexp":
            return f"_logsumexp({text}, {axis})"
        if step.op == "max":
            return f"_max({text}, {axis})"
        ref = self.spec.targets[0]
        if step.op == "count":
            return f"_count({axis}, {ref}, {context})"
        if step.op == "seed":
            return f"_seed({ref}{', ' if context else ''}{context})"
        if step.op == "collect":
            return f"_collect({text}, {step.like.name}{', ' if context else ''}{context})"
        raise ValueError(f"unknown step {step.op}")  # pragma: no cover - derive makes only these

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


def _indent_doc(text: str, indent: str = "    ") -> str:
    return "\n".join((indent + line) if line else "" for line in text.split("\n"))


class ModuleWriter:
    """Writes one module for one backend."""

    def __init__(self, spec: Spec, backend: Backend):
        self.spec = spec
        self.backend = backend
        self.helpers: set[str] = set()
        self.uses_math = False

    def _printer(self) -> ArrayPrinterMixin:
        tensors = set(self.spec.tensors) | {b for b, _ in self.spec.bindings}
        return self.backend.printer(tensors=tensors, reference=self.spec.targets[0])

    def _function(self, name: str, doc: str, steps: Sequence[Step], outputs: Sequence, result: str,
                  extra_args: str = "", preamble: Sequence[str] = ()) -> str:
        """`def name(args): <steps>; return result.format(*printed outputs)`."""
        printer = self._printer()
        body = _Body(self.spec, printer, steps, outputs)
        self.helpers |= printer.helpers_used
        self.uses_math |= printer.uses_math
        args = ", ".join(self.spec.arguments) + extra_args
        lines = [f"def {name}({args}{self.spec.keyword_params}):", f'    """{doc}"""', *preamble, *body.lines,
                 f"    return {result.format(*body.outputs)}"]
        return "\n".join(lines)

    def functions(self) -> list[str]:
        s = self.spec
        args = ", ".join(s.arguments)
        k = len(s.targets)
        context = ", ".join(s.context)
        what = {"mean": "the mean of", "sum": "the sum of", "none": "no reduction:"}[s.reduction]
        of = "d(sum of the values)" if s.reduction == "none" else "d loss"

        def tupled(items: Sequence[str]) -> str:
            return items[0] if len(items) == 1 else "(" + ", ".join(items) + ")"

        per = "element" if s.elementwise else "sample"
        out = [self._function("values", f"The loss of every {per}, l({args}), broadcast (loss() reduces these).",
                              s.forward.steps, [s.value], f"_broadcast({{0}}{', ' if context else ''}{context})")]
        reduced = f"_reduce(values({args}{s.pass_params}))"
        if s.reduction == "none" and s.squeeze is not None:
            axis = s.squeeze if s.squeeze.lstrip("-").isdigit() else repr(s.squeeze)
            reduced = f"_squeeze({reduced}, {axis})"
        out.append(f"def loss({args}{s.keyword_params}):\n"
                   f'    """The loss: {what} l over all of its values."""\n'
                   f"    return {reduced}")
        grads = [f"{{{i}}}" for i in range(k)]
        out.append(self._function("grad", f"{of} / d{', d'.join(s.targets)}, shaped like the target"
                                  + ("s." if k > 1 else "."), s.backward.steps, s.backward.outputs, tupled(grads)))
        out.append(self._function(
            "value_and_grad", "(loss, grad) sharing their work.", s.backward.steps, [s.value, *s.backward.outputs],
            f"_reduce(_broadcast({{0}}{', ' if context else ''}{context})), "
            + tupled([f"{{{i + 1}}}" for i in range(k)])))
        if k == 1:
            hvp_doc = "Hessian-vector product H v, shaped like the target."
            preamble: list[str] = []
            tangent_arg = ", v"
        else:
            hvp_doc = "Hessian-vector product; v holds one array per target, in the order of TARGETS."
            preamble = [f"    {', '.join(s.tangent_inputs)} = v"]
            tangent_arg = ", v"
        out.append(self._function("hvp", hvp_doc, s.tangent.steps, s.tangent.outputs,
                                  tupled([f"{{{i}}}" for i in range(k)]), tangent_arg, preamble))
        out.append(self._hessian())
        if k == 1 and (s.elementwise or s.per_sample):
            out.append(self._newton())
        return out

    def _hessian(self) -> str:
        s = self.spec
        k = len(s.targets)
        if s.elementwise:
            # d2L/dt_i dt_j = w d2F/dt_i dt_j per element: collect each to its target's shape
            seed = next(step for step in s.backward.steps if step.op == "seed")
            steps = [*s.forward.steps, seed]
            outputs, collects = [], []
            for i in range(k):
                for j in range(k):
                    symbol = sympy.Symbol(f"h_{s.targets[i]}_{s.targets[j]}" if k > 1 else f"h_{s.targets[0]}",
                                          real=True)
                    like = sympy.Symbol(s.targets[i], real=True)
                    ctx = tuple(sympy.Symbol(c, real=True) for c in s.context)
                    collects.append(Step(symbol, "collect", seed.symbol * s.diagonal[i][j], like=like, context=ctx))
                    outputs.append(symbol)
            if k == 1:
                doc = f"Diagonal of the Hessian by {s.targets[0]} (it is diagonal), shaped like the target."
                result = "{0}"
            else:
                doc = ("Hessian blocks, each diagonal: entry [i][j] holds d2 loss / dt_i dt_j per element, "
                       "collected to target i's shape.")
                result = "(" + ", ".join("(" + ", ".join(f"{{{i * k + j}}}" for j in range(k)) + ")"
                                         for i in range(k)) + ")"
            return self._function("hessian", doc, steps + collects, outputs, result)
        args = ", ".join(s.arguments)
        targets = ", ".join(s.targets)
        self.helpers.add("_hessian_blocks")
        if s.per_sample:
            doc = ("Dense Hessian blocks per sample, shape (batch, d, d) with d the elements of a sample"
                   + ("; entry [i][j] pairs targets i and j." if k > 1 else "."))
        else:
            doc = "The whole Hessian (a reduction spans the batch), shaped target.shape + target.shape."
        call = "lambda v: (hvp({0}, v[0]{1}),)" if k == 1 else "lambda v: hvp({0}, v{1})"
        result = "blocks[0][0]" if k == 1 else "blocks"
        return (f"def hessian({args}{s.keyword_params}):\n"
                f'    """{doc} Built from hvp with basis vectors."""\n'
                f"    blocks = _hessian_blocks({call.format(args, s.pass_params)}, ({targets},), "
                f"per_sample={s.per_sample})\n"
                f"    return {result}")

    def _newton(self) -> str:
        s = self.spec
        target = s.targets[0]
        others = [a for a in s.arguments if a != target]
        call = ", ".join("_matvec(X, w)" if a == target else a for a in s.arguments)
        head = ", ".join(["X", *others, "w"])
        if s.elementwise:
            self.helpers |= {"_matvec", "_weighted_gram"}
            return (f"def newton_hessian({head}{s.keyword_params}):\n"
                    f'    """Hessian in w of the loss of the linear model {target} = X @ w: X^T diag(l\'\') X; for\n'
                    f'    w of shape (d, k), the (d k, d k) matrix in the row-major order of w."""\n'
                    f"    return _weighted_gram(X, hessian({call}{s.pass_params}))")
        self.helpers |= {"_matvec", "_block_gram"}
        return (f"def newton_hessian({head}{s.keyword_params}):\n"
                f'    """Hessian in w (d, k) of the loss of the linear model {target} = X @ w (softmax regression\n'
                f'    and the like): sum_i (x_i x_i^T) (x) H_i with H_i the per-sample blocks, (d k, d k)."""\n'
                f"    return _block_gram(X, hessian({call}{s.pass_params}))")

    def header(self) -> str:
        s = self.spec
        top = [f"{s.name}: generated by losscomp {__version__} for {self.backend.name}. Do not edit;",
               "regenerate it from the source instead.", "", "Source:"]
        lines = ["", *s.display, "",
                 f"Reduction: {s.reduction}"
                 + (" over every loss value; grad, hessian and hvp carry the 1/N." if s.reduction == "mean" else "."),
                 "Inputs broadcast against each other; results take the dtype of the inputs.",
                 "Kinks: " + KINK_CONVENTION + ".", *self.backend.notes]
        wrapped = []
        for line in lines:
            wrapped.extend(_wrap(line))
        # the source as written, line by line (never wrapped), then the derivation and conventions
        text = "\n".join([*top, _indent_doc(s.source), *wrapped])
        return '"""' + string_body(text) + '\n"""'

    def write(self) -> str:
        functions = self.functions()
        extras = self.backend.extras(self.spec)
        helpers = [self.backend.helpers[h].strip("\n") for h in sorted(self.helpers)]
        imports = (["import math"] if self.uses_math or any("math." in h for h in helpers) else [])
        imports += list(self.backend.imports)
        constants = [f"NAME = {self.spec.name!r}", f"ARGUMENTS = {tuple(self.spec.arguments)!r}",
                     f"TARGETS = {tuple(self.spec.targets)!r}",
                     "PARAMETERS = {" + ", ".join(f"{n!r}: {_literal(v)}" for n, v in self.spec.parameters) + "}",
                     f"REDUCTION = {self.spec.reduction!r}",
                     f"KIND = {self.spec.kind!r}  # 'elementwise', 'per_sample' or 'whole_batch'"]
        reductions = [chunk.strip("\n") for chunk in
                      re.split(r"\n\s*\n(?=def )", self.backend.reductions[self.spec.reduction])]
        parts = [self.header(), "\n".join(imports), "\n".join(constants), *reductions, *helpers, *functions]
        if extras:
            parts.append(extras.strip("\n"))
        return "\n\n\n".join(parts) + "\n"


def string_body(text: str) -> str:
    """`text` as the body of a triple-double-quoted string literal whose value is exactly `text`.

    This is the one way text from a user (the loss source, its comments) reaches an emitted module:
    backslashes and double quotes are escaped, and every character that is not printable (line breaks
    other than newline, tabs, control and separator characters) is written as an escape, so no input
    can end the string or start a statement.
    """
    out = []
    for char in text:
        if char == "\\" or char == '"':
            out.append("\\" + char)
        elif char == "\n" or char.isprintable():
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out)


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
