"""The emitted module: header, imports, helpers and functions, as deterministic text.

Each public function prints one program of `derive` (forward, backward or tangent), keeping only
the steps its outputs need. The expressions of all its steps go through `sympy.cse` together; a
shared subexpression is named after a `where` binding (`e`), a function of a named value (`abs_e`),
or `t0`, `t1`, ...; `losscomp.schedule` lowers them to one operation per statement and lets a
statement reuse the memory of a temporary that is dead. Every name the module introduces comes
from a `losscomp.naming.Namespace`, so no user name can collide with one of the emitter's.
"""

from __future__ import annotations

import hashlib
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
from .errors import LossDefinitionError
from .naming import INTERNAL, Namespace, internal, is_internal, rename_globals, stem
from .schedule import ARRAY, SCALAR, Kind, Scheduler, join

PUBLIC_FUNCTIONS = ("values", "loss", "grad", "value_and_grad", "hvp", "hessian", "newton_hessian")
CONSTANTS = ("NAME", "ARGUMENTS", "TARGETS", "PARAMETERS", "REDUCTION", "KIND", "ROLES", "SOURCE_HASH")
RESERVED_KEYWORDS = ("sample_weight", "validate")  # keyword arguments every emitted function takes


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
    roles: tuple[tuple[str, str, str], ...] = ()   # (argument, role, domain); role 'index' for labels
    symbols: tuple[tuple[str, sympy.Symbol], ...] = ()  # argument and parameter symbols by name

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

    @property
    def source_hash(self) -> str:
        """A short hash of the source, the parameters and the options: it names the formula."""
        text = "\n".join([self.source, repr(self.parameters), self.reduction, repr(self.targets), __version__])
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def role(self, name: str) -> tuple[str, str]:
        for argument, role, domain in self.roles:
            if argument == name:
                return role, domain
        return "element", "real"


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


def user_names(spec: Spec) -> set[str]:
    return set(spec.arguments) | {n for n, _ in spec.parameters} | {b for b, _ in spec.bindings}


def check_names(spec: Spec) -> None:
    """The few keyword names every emitted function takes cannot also name a part of the loss."""
    clash = sorted(user_names(spec) & set(RESERVED_KEYWORDS))
    if clash:
        raise LossDefinitionError(f"'{clash[0]}' is a keyword argument of every emitted function "
                                  f"({', '.join(RESERVED_KEYWORDS)}); choose another name for it in the loss")


class _Body:
    """The statements of one function: program steps with their shared subexpressions named."""

    def __init__(self, writer: "ModuleWriter", steps: Sequence[Step], outputs: Sequence[sympy.Expr],
                 kinds: dict, scope, inplace: bool):
        spec = writer.spec
        self.writer = writer
        self.scope = scope
        steps = _needed(steps, outputs)
        bindings = tuple((name, value) for name, value in spec.bindings)
        named: list[tuple[sympy.Symbol, sympy.Expr]] = []
        for index, (name, value) in enumerate(bindings):
            if value.is_Atom:
                continue
            named.append((sympy.Symbol(name, real=True), display.with_names(value, bindings[:index])))
        exprs = [display.with_names(s.expr, bindings) for s in steps]
        outs = [display.with_names(o, bindings) for o in outputs]
        counter = iter(range(10**9))
        replacements, reduced = sympy.cse(exprs + outs, order="canonical",
                                          symbols=(sympy.Symbol(internal(f"t{next(counter)}"), real=True)
                                                   for _ in iter(int, 1)))
        renamed: dict[sympy.Symbol, sympy.Symbol] = {}
        pending: list[tuple[sympy.Symbol, sympy.Expr]] = []
        taken: set[str] = set()
        for symbol, value in replacements:
            value = value.xreplace(renamed)
            better = self._name_for(value, taken)
            if better is not None:
                renamed[symbol] = sympy.Symbol(internal(better), real=True)
                taken.add(better)
                symbol = renamed[symbol]
            pending.append((symbol, value))
        reduced = [r.xreplace(renamed) for r in reduced]
        available = named + pending

        temps = (sympy.Symbol(internal(f"t{n}"), real=True) for n in range(next(counter), 10**9))
        reference = sympy.Symbol(spec.targets[0], real=True)
        reference = next((s for s in kinds if s.name == spec.targets[0]), reference)
        self.sched = Scheduler(kinds, temp=lambda: next(temps), inplace=inplace, reference=reference,
                               axpy=inplace and writer.backend.printer.AXPY is not None)
        definitions = dict(available)
        position = {symbol: index for index, (symbol, _) in enumerate(available)}
        done: set[sympy.Symbol] = set()

        def need(expr):
            """Emit, in order, the bindings and shared subexpressions `expr` uses (a depth-first walk)."""
            wanted, stack = set(), [s for s in expr.free_symbols if s in definitions]
            while stack:
                symbol = stack.pop()
                if symbol in wanted or symbol in done:
                    continue
                wanted.add(symbol)
                stack.extend(s for s in definitions[symbol].free_symbols if s in definitions)
            for symbol in sorted(wanted, key=position.__getitem__):
                done.add(symbol)
                self.sched.assign(symbol, definitions[symbol])

        for step, expr in zip(steps, reduced[:len(steps)]):
            need(expr)
            self._step(step, expr)
        self.outputs = []
        for out in reduced[len(steps):]:
            need(out)
            self.outputs.append(self.sched.atom(out))
        self.sched.reuse_buffers(self.outputs)

    def _step(self, step: Step, expr: sympy.Expr) -> None:
        sched = self.sched
        if step.op in ("sum", "max", "logsumexp"):
            operand_atoms = sched.kind(expr).atoms
            atoms = frozenset({f"{step.axis}:" + "+".join(sorted(operand_atoms))})
            sched.step(step.symbol, step.op, expr, Kind(ARRAY, atoms), axis=step.axis)
        elif step.op == "count":
            sched.step(step.symbol, "count", None, Kind(SCALAR), axis=step.axis, context=step.context)
        elif step.op == "seed":
            # 1/N, or weights per sample: its shape broadcasts into the loss values' shape
            sched.absorbed["@seed"] = join([sched.kinds_of(c) for c in step.context]).atoms
            sched.step(step.symbol, "seed", None, Kind(ARRAY, frozenset({"@seed"})), context=step.context)
        elif step.op == "collect":
            like = sched.kinds_of(step.like)
            sched.step(step.symbol, "collect", expr if expr != 0 else None, Kind(ARRAY, like.atoms),
                       like=step.like, context=step.context)
        else:  # pragma: no cover - derive makes only these
            raise ValueError(f"unknown step {step.op}")

    @staticmethod
    def _name_for(value: sympy.Expr, taken: set[str]) -> str | None:
        """`abs_e` for abs(e), `sigmoid_z` for sigmoid(z): a function of one named value."""
        if isinstance(value, sympy.Function) and len(value.args) == 1 and value.args[0].is_Symbol:
            inner = value.args[0].name
            if is_internal(inner):
                return None
            name = f"{type(value).__name__.lower()}_{inner}"
            if name.isidentifier() and not keyword.iskeyword(name) and name not in taken:
                return name
        return None

    def lines(self, printer: ArrayPrinterMixin) -> list[str]:
        printer.kinds = dict(self.sched.kinds)
        printer.name_of = self.writer.name_of(self.scope)
        return [f"    {printer.statement(st, printer.name_of)}" for st in self.sched.statements]

    def output(self, printer: ArrayPrinterMixin, index: int) -> str:
        return printer.operand(self.outputs[index])


def _indent_doc(text: str, indent: str = "    ") -> str:
    return "\n".join((indent + line) if line else "" for line in text.split("\n"))


class ModuleWriter:
    """Writes one module for one backend."""

    def __init__(self, spec: Spec, backend: Backend):
        check_names(spec)
        self.spec = spec
        self.backend = backend
        self.ns = Namespace(user_names(spec))
        # every global a body may use is reserved first, so that no local takes its name
        for name in (backend.printer.ALIAS, "math", *backend.helpers, *self._reduction_helpers(),
                     "_inputs", "_number", *PUBLIC_FUNCTIONS):
            self.ns.reserve(name)
        self.symbols = dict(spec.symbols)
        self.reference = spec.targets[0]

    def _reduction_helpers(self) -> list[str]:
        return list(self.backend.reductions[self.spec.reduction])

    def printer(self) -> ArrayPrinterMixin:
        return self.backend.printer(self.ns, reference=self.reference)

    def name_of(self, scope):
        """Python names for one function's symbols: user names as written; the compiler's own from the
        scope, temporaries numbered t0, t1, ... in the order they first appear."""
        temps: dict[str, str] = getattr(scope, "temps", None)
        if temps is None:
            temps = scope.temps = {}

        def name(symbol: sympy.Symbol) -> str:
            if not is_internal(symbol.name):
                return symbol.name
            key = stem(symbol.name)
            if re.fullmatch(r"t\d+", key):
                if key not in temps:
                    temps[key] = scope.local(f"t{len(temps)}")
                return temps[key]
            return scope.local(key)
        return name

    # -- kinds of the inputs ---------------------------------------------------------------------
    def kinds(self, extra: dict | None = None) -> dict:
        kinds: dict = {}
        for name in self.spec.arguments:
            kinds[self._symbol(name)] = Kind(ARRAY, frozenset({name}))
        for name, _ in self.spec.parameters:
            kinds[self._symbol(name)] = Kind(SCALAR)
        kinds.update(extra or {})
        return kinds

    def _symbol(self, name: str) -> sympy.Symbol:
        return self.symbols.get(name, sympy.Symbol(name, real=True))

    # -- pieces of a function ----------------------------------------------------------------------
    def signature(self, name: str, extra_args: Sequence[str] = (), weights: bool = True,
                  validate: bool = True, decorate: bool = False) -> list[str]:
        s = self.spec
        args = list(s.arguments) + list(extra_args)
        keywords = [f"{n}={_literal(v)}" for n, v in s.parameters]
        if weights:
            keywords.append("sample_weight=None")
        if validate:
            keywords.append("validate=False")
        text = ", ".join(args) + (", *, " + ", ".join(keywords) if keywords else "")
        lines = []
        if decorate and self.backend.name == "torch":
            lines.append(f"@{self.ns.glob('torch')}.no_grad()")
        lines.append(f"def {name}({text}):")
        return lines

    def prologue(self, scope, validate: bool = True) -> list[str]:
        """Inputs as the framework's floating arrays (labels as integers), shapes checked; parameters as
        numbers (NumPy) or 0-d tensors of the target's dtype."""
        s = self.spec
        args = ", ".join(s.arguments)
        lines = [f"    {args}{',' if len(s.arguments) == 1 else ''} = {self.ns.glob('_inputs')}"
                 f"({args}{', validate' if validate else ''})"]
        for name, _ in s.parameters:
            if self.backend.tensor_scalars:
                lines.append(f"    {name} = {self.ns.glob('_scalar')}({name}, {self.reference})")
            else:
                lines.append(f"    {name} = {self.ns.glob('_number')}({name})")
        return lines

    def inputs_helper(self) -> str:
        """`_inputs(args, validate=False)`: the module's own prologue, written for its argument roles."""
        s = self.spec
        g = self.ns.glob
        args = ", ".join(s.arguments)
        body = []
        ordered = sorted(s.arguments, key=lambda a: a not in s.targets[:1])  # the reference first (TensorFlow)
        for name in ordered:
            role, domain = s.role(name)
            if role == "index":
                body.append(f"    {name} = {g('_labels')}({name})")
            elif self.backend.name == "tensorflow" and name != s.targets[0]:
                body.append(f"    {name} = {g('_floating')}({name}, {s.targets[0]})")
            else:
                body.append(f"    {name} = {g('_floating')}({name})")
        triples = ", ".join(f"({name!r}, {name}, {s.role(name)[0]!r})" for name in s.arguments)
        rank_name = self.ns.scope().local("rank")
        body.append(f"    {rank_name} = {g('_check_shapes')}({triples})")
        body.append("    if validate:")
        body.extend(f"        {g('_validate')}({name!r}, {name}, {s.role(name)[1]!r})" for name in s.arguments)
        for name in s.arguments:
            if s.role(name)[0] == "sample":
                body.append(f"    {name} = {g('_per_sample')}({name}, {rank_name})")
        doc = ("The arguments as floating arrays (labels as integers), their shapes checked against each other; "
               "with validate=True, their values against their domains.")
        lines = [f"def {g('_inputs')}({args}, validate=False):", f'    """{doc}"""', *body,
                 f"    return {args}{',' if len(s.arguments) == 1 else ''}"]
        return "\n".join(lines)

    def body(self, steps, outputs, extra_kinds=None, inplace=True) -> tuple["_Body", list[str], ArrayPrinterMixin]:
        scope = self.ns.scope()
        kinds = self.kinds(extra_kinds)
        body = _Body(self, steps, outputs, kinds, scope, inplace and self.backend.inplace)
        printer = self.printer()
        return body, body.lines(printer), printer

    # -- the public functions --------------------------------------------------------------------
    def functions(self) -> list[str]:
        s = self.spec
        g = self.ns.glob
        args = ", ".join(s.arguments)
        k = len(s.targets)
        what = {"mean": "the mean of", "sum": "the sum of", "none": "no reduction:"}[s.reduction]
        of = "d(sum of the values)" if s.reduction == "none" else "d loss"
        out = []

        def tupled(items: Sequence[str]) -> str:
            return items[0] if len(items) == 1 else "(" + ", ".join(items) + ")"

        per = "element" if s.elementwise else "sample"
        # values
        scope_body, lines, printer = self.body(s.forward.steps, [s.value], inplace=False)
        value = scope_body.output(printer, 0)
        result = self._broadcast(scope_body, value, printer)
        out.append("\n".join([*self.signature("values", weights=False),
                              f'    """The loss of every {per}, l({args}), before the reduction."""',
                              *self.prologue(scope_body.scope), *lines, f"    return {result}"]))
        # loss
        call = f"{g('values')}({args}{s.pass_params}, validate=validate)"
        reduced = f"{g('_reduce')}({call}, sample_weight)"
        if s.reduction == "none" and s.squeeze is not None:
            axis = s.squeeze if s.squeeze.lstrip("-").isdigit() else repr(s.squeeze)
            reduced = f"{g('_squeeze')}({reduced}, {axis})"
        out.append("\n".join([*self.signature("loss"),
                              f'    """The loss: {what} l over all of its values (weighted by sample_weight)."""',
                              f"    return {reduced}"]))
        # grad
        body, lines, printer = self.body(s.backward.steps, list(s.backward.outputs))
        grads = [body.output(printer, i) for i in range(k)]
        out.append("\n".join([*self.signature("grad", decorate=True),
                              f'    """{of} / d{", d".join(s.targets)}, shaped like the target{"s" if k > 1 else ""}."""',
                              *self.prologue(body.scope), *lines, f"    return {tupled(grads)}"]))
        # value_and_grad
        body, lines, printer = self.body(s.backward.steps, [s.value, *s.backward.outputs])
        value = self._broadcast(body, body.output(printer, 0), printer)
        grads = [body.output(printer, i + 1) for i in range(k)]
        out.append("\n".join([*self.signature("value_and_grad", decorate=True),
                              '    """(loss, grad) sharing their work."""',
                              *self.prologue(body.scope), *lines,
                              f"    return {g('_reduce')}({value}, sample_weight), {tupled(grads)}"]))
        # hvp
        out.append(self._hvp())
        out.append(self._hessian())
        if k == 1 and (s.elementwise or s.per_sample):
            out.append(self._newton())
        return out

    def _context_symbol(self, name: str) -> sympy.Symbol:
        for step in self.spec.forward.steps:
            if step.symbol.name == name:
                return step.symbol
        return self._symbol(name)

    def _broadcast(self, body: _Body, value: str, printer) -> str:
        """The loss values broadcast to their full shape, unless they have it already (known statically)."""
        s = self.spec
        context = [self._context_symbol(c) for c in s.context]
        atom = body.outputs[0]
        kind = body.sched.kinds_of(atom)
        full = join([body.sched.kinds_of(c) for c in context]).atoms if context else frozenset()
        if kind.what == ARRAY and kind.atoms == full:
            return value
        names = body.writer.name_of(body.scope)
        return f"{self.ns.glob('_broadcast')}({value}, {self.reference}" + "".join(
            ", " + names(c) for c in context) + ")"

    def _hvp(self) -> str:
        s = self.spec
        k = len(s.targets)
        vs = [sympy.Symbol(name, real=True) for name in s.tangent_inputs]
        extra = {v: self.kinds()[self._symbol(t)] for v, t in zip(vs, s.targets)}
        body, lines, printer = self.body(s.tangent.steps, list(s.tangent.outputs), extra)
        names = body.writer.name_of(body.scope)
        v_name = body.scope.local("v")  # the tangent input '@v' of one target prints under this name too
        if k == 1:
            preamble = []
            doc = "Hessian-vector product H v, shaped like the target."
        else:
            preamble = [f"    {', '.join(names(v) for v in vs)} = {v_name}"]
            doc = "Hessian-vector product; v holds one array per target, in the order of TARGETS."
        outs = [body.output(printer, i) for i in range(k)]
        result = outs[0] if k == 1 else "(" + ", ".join(outs) + ")"
        return "\n".join([*self.signature("hvp", [v_name], decorate=True), f'    """{doc}"""',
                          *self.prologue(body.scope), *preamble, *lines, f"    return {result}"])

    def _hessian(self) -> str:
        s = self.spec
        k = len(s.targets)
        g = self.ns.glob
        args = ", ".join(s.arguments)
        if s.elementwise:
            # d2L/dt_i dt_j = w d2F/dt_i dt_j per element: collect each to its target's shape
            seed = next(step for step in s.backward.steps if step.op == "seed")
            steps = [*s.forward.steps, seed]
            outputs, collects = [], []
            ctx = tuple(self._context_symbol(c) for c in s.context)
            for i in range(k):
                for j in range(k):
                    symbol = sympy.Symbol(internal(f"h_{s.targets[i]}_{s.targets[j]}" if k > 1 else f"h_{s.targets[0]}"),
                                          real=True)
                    collects.append(Step(symbol, "collect", seed.symbol * s.diagonal[i][j],
                                         like=self._symbol(s.targets[i]), context=ctx))
                    outputs.append(symbol)
            body, lines, printer = self.body(steps + collects, outputs)
            outs = [body.output(printer, i) for i in range(k * k)]
            if k == 1:
                doc = f"Diagonal of the Hessian by {s.targets[0]} (it is diagonal), shaped like the target."
                result = outs[0]
            else:
                doc = ("Hessian blocks, each diagonal: entry [i][j] holds d2 loss / dt_i dt_j per element, "
                       "collected to target i's shape.")
                result = "(" + ", ".join("(" + ", ".join(outs[i * k + j] for j in range(k)) + ")"
                                         for i in range(k)) + ")"
            return "\n".join([*self.signature("hessian", decorate=True), f'    """{doc}"""',
                              *self.prologue(body.scope), *lines, f"    return {result}"])
        targets = ", ".join(s.targets)
        if s.per_sample:
            doc = ("Dense Hessian blocks per sample, shape (batch, d, d) with d the elements of a sample"
                   + ("; entry [i][j] pairs targets i and j." if k > 1 else "."))
        else:
            doc = "The whole Hessian (a reduction spans the batch), shaped target.shape + target.shape."
        scope = self.ns.scope()
        v, blocks = scope.local("v"), scope.local("blocks")
        keywords = s.pass_params + ", sample_weight=sample_weight"
        call = f"lambda {v}: ({g('hvp')}({args}, {v}[0]{keywords}),)" if k == 1 else \
            f"lambda {v}: {g('hvp')}({args}, {v}{keywords})"
        result = f"{blocks}[0][0]" if k == 1 else blocks
        return "\n".join([*self.signature("hessian", decorate=True),
                          f'    """{doc} Built from hvp with basis vectors."""',
                          *self.prologue(scope),
                          f"    {blocks} = {g('_hessian_blocks')}({call}, ({targets}{',' if k == 1 else ''}), "
                          f"per_sample={s.per_sample})",
                          f"    return {result}"])

    def _newton(self) -> str:
        s = self.spec
        g = self.ns.glob
        target = s.targets[0]
        scope = self.ns.scope()
        X, w = scope.local("X"), scope.local("w")
        others = [a for a in s.arguments if a != target]
        call = ", ".join(f"{g('_matvec')}({X}, {w})" if a == target else a for a in s.arguments)
        head = [X, *others, w]
        keywords = s.pass_params + ", sample_weight=sample_weight"
        signature = self.signature("newton_hessian", validate=False)[-1].replace(
            f"newton_hessian({', '.join(s.arguments)}", f"newton_hessian({', '.join(head)}")
        if s.elementwise:
            return (f"{signature}\n"
                    f'    """Hessian in w of the loss of the linear model {target} = X @ w: X^T diag(l\'\') X; for\n'
                    f'    w of shape (d, k), the (d k, d k) matrix in the row-major order of w."""\n'
                    f"    return {g('_weighted_gram')}({X}, {g('hessian')}({call}{keywords}))")
        return (f"{signature}\n"
                f'    """Hessian in w (d, k) of the loss of the linear model {target} = X @ w (softmax regression\n'
                f'    and the like): sum_i (x_i x_i^T) (x) H_i with H_i the per-sample blocks, (d k, d k)."""\n'
                f"    return {g('_block_gram')}({X}, {g('hessian')}({call}{keywords}))")

    # -- the module ----------------------------------------------------------------------------------
    def header(self) -> str:
        s = self.spec
        top = [f"{s.name}: generated by losscomp {__version__} for {self.backend.name}. Do not edit;",
               "regenerate it from the source instead.", "", "Source:"]
        lines = ["", *s.display, "",
                 f"Reduction: {s.reduction}"
                 + (" over every loss value; grad, hessian and hvp carry the 1/N." if s.reduction == "mean" else "."),
                 "sample_weight: loss, grad, value_and_grad, hvp and hessian take weights per sample (N,) or per "
                 "loss value; a weighted mean is sum(w l) / sum(w).",
                 "Inputs: integer inputs are cast to the default float type; arguments broadcast against each other "
                 "only with the same number of axes; results take the dtype of the inputs. validate=True checks "
                 "every input against its domain.",
                 "Kinks: " + KINK_CONVENTION + ".", *self.backend.notes]
        wrapped = []
        for line in lines:
            wrapped.extend(_wrap(line))
        # the source as written, line by line (never wrapped), then the derivation and conventions
        text = "\n".join([*top, _indent_doc(s.source), *wrapped])
        return '"""' + string_body(text) + '\n"""'

    def helpers(self, used: set[str]) -> list[str]:
        """The helpers the functions use, and the ones those use, in a fixed order."""
        table = {**self.backend.helpers, **self.backend.reductions[self.spec.reduction]}
        wanted, frontier = set(), [n for n in used if n in table]
        while frontier:
            name = frontier.pop()
            if name in wanted:
                continue
            wanted.add(name)
            for token in re.findall(r"(?<![\w.])(_\w+)\(", table[name]):
                if token in table and token not in wanted:
                    frontier.append(token)
        renames = self.ns.renames()
        return [rename_globals(table[name].strip("\n"), renames) for name in sorted(wanted)]

    def write(self) -> str:
        s = self.spec
        g = self.ns.glob
        functions = self.functions()
        inputs = self.inputs_helper()
        number = (f"def {g('_number')}(x):\n    \"\"\"A parameter as a Python float.\"\"\"\n    return float(x)"
                  if not self.backend.tensor_scalars and s.parameters else None)
        extras = self.backend.extras(s, self.ns) if self.backend.extras else ""
        body_text = "\n".join([inputs, *functions, extras])
        used = set(re.findall(r"(?<![\w.])(_\w+)\(", rename_globals(body_text, {v: k for k, v in self.ns.renames().items()})))
        helpers = self.helpers(used | {"_floating", "_check_shapes", "_validate"})
        all_text = body_text + "\n".join(helpers)
        imports = []
        for module, alias in self.backend.imports:
            given = g(alias)
            imports.append(f"import {module}" if given == module else f"import {module} as {given}")
        if re.search(rf"(?<![\w.]){re.escape(g('math'))}\.", all_text):
            imports.insert(0, "import math" if g("math") == "math" else f"import math as {g('math')}")
        constants = [f"NAME = {s.name!r}", f"ARGUMENTS = {tuple(s.arguments)!r}",
                     f"TARGETS = {tuple(s.targets)!r}",
                     "PARAMETERS = {" + ", ".join(f"{n!r}: {_literal(v)}" for n, v in s.parameters) + "}",
                     f"REDUCTION = {s.reduction!r}",
                     f"KIND = {s.kind!r}  # 'elementwise', 'per_sample' or 'whole_batch'",
                     "ROLES = {" + ", ".join(f"{a!r}: {r!r}" for a, r, _ in s.roles) + "}",
                     f"SOURCE_HASH = {s.source_hash!r}  # names this formula, its parameters and options"]
        aliases = [f"{given} = {wanted}" for wanted, given in self.ns.renames().items() if wanted in PUBLIC_FUNCTIONS]
        parts = [self.header(), "\n".join(imports), "\n".join(constants), *helpers,
                 *([number] if number else []), inputs, *functions]
        if aliases:
            parts.append("# the public functions under names no argument of this loss shadows\n" + "\n".join(aliases))
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
