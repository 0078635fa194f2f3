"""Gradients and Hessians: reverse mode over a small graph of elementwise expressions and reductions.

A loss is `F(x, R_1, ..., R_m)`, elementwise in its arguments x and its reduction symbols R_k, where
`R_k = reduce_k(op_k)` over the per-sample axes (`ir.Reduction`). With `w` the adjoint of F (1/N for
a mean, 1 for a sum), reverse mode gives

    adj_k   = collect_{R_k}( w dF/dR_k + sum_{j > k} adj_j  r_j  dop_j/dR_k )
    dL/dx   = collect_x  ( w dF/dx   + sum_j       adj_j  r_j  dop_j/dx   )

where `collect_u` sums a term over the axes on which it is wider than u (the adjoint of
broadcasting), and r_j is the reduction's own derivative: 1 for a sum, softmax(op_j) = exp(op_j - R_j)
for a logsumexp. Each step is an elementwise SymPy expression (`sympy.diff`, on the form
`canonical.lower` gives, so kinks differentiate by the convention and never give a DiracDelta) or a
reduction, so the
emitted code computes every reduction once per sample.

Hessian-vector products run forward mode over that gradient program (tangents of every step), which
gives the structured diagonal-plus-low-rank Hessian without forming it. For an elementwise loss the
Hessian is diagonal and its diagonal is d2F/dx2, taken directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from . import canonical
from .errors import LossDerivationError
from .functions import onehot
from .ir import Definition, Reduction
from .naming import internal, stem as _stem

CONSTANT_REDUCTIONS = ("count", "max")  # no derivative flows through these (see ir.Reduction)
_UNPRINTABLE = (sympy.DiracDelta, sympy.Heaviside, sympy.Derivative, sympy.Subs, sympy.Integral)


@dataclass(frozen=True)
class Step:
    """One assignment of a program.

    op: 'sum' | 'logsumexp' | 'max' | 'count' (reductions of `expr` over `axis`, kept dims; 'max' and
        'count' are constants for differentiation);
        'seed' (w: 1 / the number of loss values for a mean, else 1; `context` gives the shape);
        'collect' (broadcast `expr` to the shape of `context`, then sum it down to `like`'s shape).
    """

    symbol: sympy.Symbol
    op: str
    expr: sympy.Expr
    axis: str = "sample"
    like: sympy.Symbol | None = None
    context: tuple[sympy.Symbol, ...] = ()


@dataclass(frozen=True)
class Program:
    steps: tuple[Step, ...]
    outputs: tuple[sympy.Expr, ...]


@dataclass(frozen=True)
class StructuredHessian:
    """H = diag(diagonal) + sum_m outer[m][0] outer[m][1]^T within each sample (display form)."""

    diagonal: sympy.Expr
    outer: tuple[tuple[sympy.Expr, sympy.Expr], ...] = ()


@dataclass(frozen=True)
class Derivation:
    """A loss, its derivatives with respect to `targets`, and the programs that compute them."""

    value: sympy.Expr                             # F, per element (or per sample)
    targets: tuple[sympy.Symbol, ...]
    gradient: tuple[sympy.Expr, ...]              # closed forms, for people (reductions as functions)
    hessian: tuple[tuple[object, ...], ...]       # elementwise: d2F/dt_i dt_j; else StructuredHessian
    reductions: tuple[Reduction, ...] = ()
    forward: Program | None = None                # reductions; outputs (F,)
    backward: Program | None = None               # forward + seed + adjoints; outputs: dL/dt per target
    tangent: Program | None = None                # backward + tangents; outputs: H v per target
    tangent_inputs: tuple[sympy.Symbol, ...] = ()  # the v of each target in `tangent`
    diagonal: tuple[tuple[sympy.Expr, ...], ...] = ()  # elementwise only: collected d2L/dt_i dt_j
    tensors: frozenset = field(default_factory=frozenset)  # names of symbols that hold arrays
    context: tuple[str, ...] = ()                 # arrays whose broadcast shape is the shape of F

    @property
    def elementwise(self) -> bool:
        return not any(r.kind not in CONSTANT_REDUCTIONS for r in self.reductions)


def _check(expr: sympy.Expr, what: str) -> sympy.Expr:
    bad = expr.atoms(*_UNPRINTABLE)
    if bad or expr.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        found = ", ".join(sorted({type(b).__name__ for b in bad})) or "a non-finite constant"
        raise LossDerivationError(f"the {what} contains {found}, which losscomp cannot emit")
    return expr


def _folded(expr: sympy.Expr, limit: int = 60) -> sympy.Expr:
    """A small expression with its Piecewise parts folded into one (for people: `if e > 0 then -tau
    else ...`); a large one as it is (folding multiplies branches)."""
    if not expr.has(sympy.Piecewise) or sympy.count_ops(expr) > limit:
        return expr
    folded = sympy.piecewise_fold(expr)
    return folded if sympy.count_ops(folded) <= sympy.count_ops(expr) + 8 else expr


def _diff(expr: sympy.Expr, symbol: sympy.Symbol, what: str) -> sympy.Expr:
    """d expr / d symbol under the kink convention (`canonical`): kink functions differentiate by their
    own rules, so the result is as small as expr (Piecewise only where expr has an if, or a step)."""
    return _check(canonical.raise_kinks(sympy.diff(canonical.lower(expr), symbol)), what)


class _Builder:
    """Builds the programs of one definition."""

    def __init__(self, definition: Definition, value: sympy.Expr, targets: tuple[sympy.Symbol, ...]):
        self.definition = definition
        self.value = value
        self.targets = targets
        self.reductions = definition.reductions
        self.index_symbols = {a.symbol for a in definition.arguments if a.domain == "index"}
        self.arrays = ({a.symbol for a in definition.arguments} | {r.symbol for r in self.reductions}) \
            - self.index_symbols
        self.taken: set[str] = set()
        self.counter = 0

    def fresh(self, stem: str) -> sympy.Symbol:
        """A compiler-made symbol (`losscomp.naming.internal`): it can never be one of the user's names."""
        name = internal(stem)
        while name in self.taken:
            self.counter += 1
            name = internal(f"{stem}_{self.counter}")
        self.taken.add(name)
        return sympy.Symbol(name, real=True)

    def context(self, expr: sympy.Expr) -> tuple[sympy.Symbol, ...]:
        """The arrays whose broadcast shape is the shape of `expr` (onehot(y) is shaped like the target; a
        constant is shaped like all the arguments together)."""
        symbols = {s for s in expr.free_symbols if s in self.arrays}
        if expr.has(onehot):
            symbols.add(self.targets[0])
        if not symbols:
            symbols = {a.symbol for a in self.definition.arguments if a.symbol in self.arrays}
        return tuple(sorted(symbols, key=lambda s: s.name))

    def value_context(self) -> tuple[sympy.Symbol, ...]:
        """The arrays whose broadcast shape is the shape of the loss values: every argument when the loss
        has an elementwise part (one value per element of all the arguments broadcast together, whether
        or not a term survives simplification), else the per-sample reductions it is made of."""
        symbols = set(self.context(self.value))
        reductions = {r.symbol for r in self.reductions}
        if symbols <= reductions and symbols:
            return tuple(sorted(symbols, key=lambda s: s.name))
        arguments = {a.symbol for a in self.definition.arguments if a.symbol in self.arrays}
        return tuple(sorted(arguments | (symbols & reductions), key=lambda s: s.name))

    # -- programs ----------------------------------------------------------------------------------
    def forward_steps(self) -> list[Step]:
        return [Step(r.symbol, r.kind, r.operand, r.axis,
                     context=self.context(r.operand) if r.kind == "count" else ())
                for r in self.reductions]

    def backward(self) -> tuple[list[Step], list[sympy.Symbol]]:
        steps = self.forward_steps()
        w = self.fresh("w")
        self.arrays.add(w)  # a scalar, but a framework one: keeps dtypes right
        steps.append(Step(w, "seed", self.value, context=self.value_context()))
        adjoints: dict[sympy.Symbol, sympy.Symbol] = {}
        smooth = [r for r in self.reductions if r.kind not in CONSTANT_REDUCTIONS]

        def terms(u: sympy.Symbol, later: list[Reduction]) -> list[tuple[sympy.Expr, tuple]]:
            out = []
            d = _diff(self.value, u, f"derivative by {u}")
            if d != 0:
                out.append((w * d, self.value_context()))
            for r in later:
                if r.symbol not in adjoints:
                    continue
                d = _diff(r.operand, u, f"derivative of a reduction by {u}")
                if d == 0:
                    continue
                own = 1 if r.kind == "sum" else sympy.exp(r.operand - r.symbol)  # logsumexp: softmax
                out.append((adjoints[r.symbol] * own * d, self.context(r.operand)))
            return out

        def collect(u: sympy.Symbol, stem: str, pieces) -> sympy.Symbol | None:
            if not pieces:
                return None
            grouped: dict[tuple, sympy.Expr] = {}
            for term, ctx in pieces:
                grouped[ctx] = grouped.get(ctx, 0) + term
            parts = []
            for ctx, term in grouped.items():
                symbol = self.fresh(stem) if len(grouped) == 1 else self.fresh(f"{stem}_part")
                steps.append(Step(symbol, "collect", term, like=u, context=ctx))
                self.arrays.add(symbol)
                parts.append(symbol)
            if len(parts) == 1:
                return parts[0]
            total = self.fresh(stem)
            steps.append(Step(total, "collect", sum(parts), like=u, context=(u,)))
            self.arrays.add(total)
            return total

        for k in range(len(smooth) - 1, -1, -1):
            r = smooth[k]
            adjoint = collect(r.symbol, f"d_{_stem(r.symbol.name)}", terms(r.symbol, smooth[k + 1:]))
            if adjoint is not None:
                adjoints[r.symbol] = adjoint
        self.adjoints = adjoints
        grads = []
        for t in self.targets:
            g = collect(t, f"g_{t.name}", terms(t, smooth)) or self.zeros(steps, t, f"g_{t.name}")
            grads.append(g)
        return steps, grads

    def zeros(self, steps: list[Step], like: sympy.Symbol, stem: str) -> sympy.Symbol:
        """A derivative that vanishes: zeros shaped and typed like `like`."""
        symbol = self.fresh(stem)
        steps.append(Step(symbol, "collect", sympy.S.Zero, like=like, context=(like,)))
        self.arrays.add(symbol)
        return symbol

    def tangent(self, steps: list[Step], outputs: list):
        """Forward mode over the backward program: d(step)/d(targets) . v for every step."""
        vs = [self.fresh("v" if len(self.targets) == 1 else f"v_{t.name}") for t in self.targets]
        self.arrays |= set(vs)
        tangents: dict[sympy.Symbol, sympy.Symbol] = dict(zip(self.targets, vs))
        out_steps = list(steps)

        def directional(expr: sympy.Expr) -> sympy.Expr:
            total = sympy.S.Zero
            for u, du in tangents.items():
                if u in expr.free_symbols:
                    total += _diff(expr, u, f"second derivative by {u}") * du
            return total

        for step in steps:
            if step.op in ("seed", *CONSTANT_REDUCTIONS):
                continue
            d = directional(step.expr)
            if d == 0:
                continue
            if step.op == "logsumexp":
                d = sympy.exp(step.expr - step.symbol) * d
            symbol = self.fresh(f"dot_{_stem(step.symbol.name)}")
            op = "collect" if step.op == "collect" else "sum"
            out_steps.append(Step(symbol, op, d, step.axis, step.like, step.context))
            self.arrays.add(symbol)
            tangents[step.symbol] = symbol
        results = [tangents[g] if g in tangents else self.zeros(out_steps, t, f"hv_{t.name}")
                   for g, t in zip(outputs, self.targets)]
        return out_steps, results, vs


def closed_forms(reductions) -> dict[sympy.Symbol, sympy.Expr]:
    """Each reduction symbol as a display function of its operand: sum(...), logsumexp(...), ...
    (a shifted logsumexp L = log(sum(exp(x - max(x)))) shows as logsumexp(x) - max(x))."""
    functions = {kind: sympy.Function(kind) for kind in ("sum", "logsumexp", "count", "max")}
    closed: dict[sympy.Symbol, sympy.Expr] = {}
    shifts = {r.symbol: r for r in reductions if r.kind == "max"}
    for r in reductions:
        extra = () if r.axis == "sample" else (sympy.Symbol(f"axis={r.axis}"),)
        operand = r.operand
        shift = next((m for m in shifts if m in operand.free_symbols), None) if r.kind == "logsumexp" else None
        if shift is not None:
            x = (operand + shift).xreplace(closed)
            closed[r.symbol] = functions["logsumexp"](x, *extra) - closed[shift]
        else:
            closed[r.symbol] = functions[r.kind](operand.xreplace(closed), *extra)
    return closed


def _display_names(derivation_steps: list[Step], adjoints: dict, reductions) -> dict:
    """Closed forms of reduction and adjoint symbols, with reductions as display functions."""
    closed = closed_forms(reductions)
    for step in derivation_steps:
        if step.op == "seed":
            closed[step.symbol] = sympy.S.One
        elif step.op == "collect":
            term = step.expr.xreplace(closed)
            if term == 0:
                closed[step.symbol] = sympy.S.Zero
                continue
            arguments = {s for s in step.context if s not in closed}
            like_is_reduced = step.like in closed and step.like not in adjoints.values()
            if like_is_reduced and arguments and not all(s == step.like for s in step.context):
                term = sympy.Function("sum")(term)
            closed[step.symbol] = term
    return closed


def _softmax_display(expr: sympy.Expr) -> sympy.Expr:
    """exp(x - logsumexp(x)) -> softmax(x), for display."""
    softmax = sympy.Function("softmax")

    def lse_of(e):
        if isinstance(e, sympy.exp):
            for term in sympy.Add.make_args(e.args[0]):
                lse = -term
                if getattr(lse.func, "__name__", "") == "logsumexp" and \
                        sympy.expand(e.args[0] + lse - lse.args[0]) == 0:
                    return lse
        return None

    return expr.replace(lambda e: lse_of(e) is not None, lambda e: softmax(*lse_of(e).args))


def _structure(hv: sympy.Expr, v: sympy.Symbol) -> StructuredHessian:
    """Split H v into diag(D) v + sum c (a . v) for display."""
    s = sympy.Function("sum")
    diagonal, outer = sympy.S.Zero, []
    for term in sympy.Add.make_args(sympy.expand(hv)):
        sums = [f for f in term.atoms(s) if v in f.free_symbols]
        if not sums:
            diagonal += term / v
            continue
        inner = sums[0]
        outer.append((sympy.factor(term / inner), sympy.factor(sympy.expand(inner.args[0]) / v)))
    merged: dict = {}
    for c, a in outer:
        merged[a] = merged.get(a, 0) + c
    return StructuredHessian(sympy.factor(diagonal), tuple((sympy.factor(c), a) for a, c in merged.items()))


def derive(definition: Definition, value: sympy.Expr, targets: tuple[sympy.Symbol, ...]) -> Derivation:
    """Gradient and Hessian programs of `value` (the definition's body, stabilized) by `targets`."""
    builder = _Builder(definition, value, targets)
    backward_steps, grads = builder.backward()
    tangent_steps, hvps, vs = builder.tangent(backward_steps, grads)
    forward = Program(tuple(builder.forward_steps()), (value,))
    backward = Program(tuple(backward_steps), tuple(grads))
    tangent = Program(tuple(tangent_steps), tuple(hvps))

    # closed forms for people: reductions and adjoints as sum(...), logsumexp(...)
    closed = _display_names(backward_steps, builder.adjoints, definition.reductions)
    gradient = tuple(_softmax_display(g.xreplace(closed)) for g in grads)
    elementwise = not any(r.kind not in CONSTANT_REDUCTIONS for r in definition.reductions)
    diagonal: tuple = ()
    if elementwise:
        # the per-element second derivatives: the Hessian of an elementwise loss is diagonal
        first = [_diff(value, t, f"derivative by {t}") for t in targets]
        second = [[_diff(first[i], t, f"second derivative by {targets[i]}, {t}") for t in targets]
                  for i in range(len(targets))]
        gradient = tuple(_folded(g) for g in first) if not definition.reductions else gradient
        hessian = tuple(tuple(row) for row in second)
        diagonal = hessian
    else:
        hv_closed = {**closed}
        for step in tangent_steps[len(backward_steps):]:
            term = step.expr.xreplace(hv_closed)
            if step.op == "sum":
                term = sympy.Function("sum")(term)
            hv_closed[step.symbol] = term
        rows = []
        for i in range(len(targets)):
            row = []
            for j, v in enumerate(vs):
                others = {u: 0 for k, u in enumerate(vs) if k != j}
                hv = _softmax_display(hvps[i].xreplace(hv_closed).xreplace(others))
                row.append(_structure(hv, v))
            rows.append(tuple(row))
        hessian = tuple(rows)
    return Derivation(value, tuple(targets), gradient, hessian, definition.reductions, forward, backward,
                      tangent, tuple(vs), diagonal, frozenset(s.name for s in builder.arrays),
                      tuple(s.name for s in builder.value_context()))
