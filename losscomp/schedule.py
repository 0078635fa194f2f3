"""SymPy assignments -> statements of one operation each, with the memory of dead temporaries reused.

Eager NumPy and PyTorch pay a memory pass per operation and an allocation (page faults) per new
array; a careful hand-written loss computes `e = y - p; c = clamp(e); e -= c / 2; ...` in place. This
stage gives the emitter the same:

- every subexpression gets a `Kind`: an array (with the set of "shape atoms" whose broadcast is its
  shape: the arguments it depends on, and the reduced shapes of reductions), a scalar (parameters:
  Python numbers in NumPy, 0-d tensors in PyTorch and TensorFlow) or a constant (a number);
- array-valued subexpressions become statements of one operation on atoms (names, or scalar and
  constant expressions printed inline); `a + b + c` is a chain, `x**2` is `x*x`, `y/p**2` is `y/p/p`;
- a statement may write into the buffer of an operand (`out=`) when that operand is a temporary the
  function made, is not used afterwards, and has the statement's own shape and dtype -- known
  statically when the operand's shape atoms are all of the statement's.

Nothing here knows a framework: `emit` and the backend printers turn statements into text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import sympy
from sympy.logic.boolalg import Boolean, BooleanAtom

from .functions import onehot

ARRAY, SCALAR, CONST = "array", "scalar", "const"


@dataclass(frozen=True)
class Kind:
    """What a value is at run time. `atoms`: the shapes whose broadcast is this array's shape."""

    what: str                      # ARRAY, SCALAR or CONST
    atoms: frozenset = frozenset()
    boolean: bool = False

    @property
    def array(self) -> bool:
        return self.what == ARRAY


CONSTANT = Kind(CONST)
CONSTANT_BOOL = Kind(CONST, boolean=True)


def join(kinds: Iterable[Kind], boolean: bool = False) -> Kind:
    kinds = list(kinds)
    atoms = frozenset().union(*(k.atoms for k in kinds)) if kinds else frozenset()
    if any(k.what == ARRAY for k in kinds):
        return Kind(ARRAY, atoms, boolean)
    if any(k.what == SCALAR for k in kinds):
        return Kind(SCALAR, frozenset(), boolean)
    return Kind(CONST, frozenset(), boolean)


@dataclass
class Statement:
    """`target = op(args)`.

    op: 'add' 'sub' 'mul' 'div' 'neg' 'pow' (arithmetic on two or one atoms); 'call' (args[0] is the
    function's name: exp, log, maximum, clip, where, ...); 'cmp' (args[0] is the relation: '<', ...);
    'and' 'or' 'not'; 'onehot'; 'copy' (a scalar or constant expression, or an alias);
    program steps 'sum' 'max' 'logsumexp' 'count' 'seed' 'collect' with `axis`, `like`, `context`.
    `out`: the operand whose buffer receives the result (in place), or None.
    """

    target: sympy.Symbol
    op: str
    args: tuple
    kind: Kind
    axis: str | None = None
    like: sympy.Symbol | None = None
    context: tuple = ()
    out: sympy.Symbol | None = None
    fresh: bool = False            # the op makes a new array the function owns (may be reused in place)


ELEMENTWISE_FUNCTIONS = {
    sympy.exp: "exp", sympy.log: "log", sympy.sin: "sin", sympy.cos: "cos", sympy.tanh: "tanh",
    sympy.sinh: "sinh", sympy.cosh: "cosh", sympy.Abs: "abs", sympy.sign: "sign", sympy.erf: "erf",
    sympy.loggamma: "lgamma",
}

# functions that may overwrite their (first) array operand: `exp(t, out=t)`
IN_PLACE_CALLS = frozenset({"exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sinh", "cosh", "abs",
                            "sign", "sigmoid", "maximum", "minimum", "clip", "relu"})
IN_PLACE_OPS = frozenset({"add", "sub", "mul", "div", "neg", "axpy"})


class Scheduler:
    """Builds the statements of one function body."""

    def __init__(self, kinds: Mapping[sympy.Symbol, Kind], temp, inplace: bool = True,
                 reference: sympy.Symbol | None = None, absorbed: Mapping[str, frozenset] | None = None,
                 axpy: bool = False):
        self.kinds: dict[sympy.Symbol, Kind] = dict(kinds)
        self.reference = reference      # onehot(y) is shaped like this array (the scores)
        # an atom whose shape broadcasts into a set of atoms: {"@seed": atoms of the loss values} (the seed
        # is a number, or weights per sample); next to all of those atoms it changes no shape
        self.absorbed = dict(absorbed or {})
        self.axpy = axpy                # the backend adds a constant multiple in one operation: a + k*b
        self.statements: list[Statement] = []
        self.temp = temp                # () -> a fresh Symbol for a temporary
        self.inplace = inplace
        self.memo: dict[sympy.Basic, sympy.Basic] = {}

    # -- kinds -------------------------------------------------------------------------------------
    def normal(self, kind: Kind) -> Kind:
        """Drop an absorbed atom from a kind that holds every atom it broadcasts into."""
        atoms = kind.atoms
        for atom, into in self.absorbed.items():
            if atom in atoms and into and into <= atoms:
                atoms = atoms - {atom}
        return kind if atoms == kind.atoms else Kind(kind.what, atoms, kind.boolean)

    def join(self, kinds, boolean: bool = False) -> Kind:
        return self.normal(join(kinds, boolean))

    def kind(self, expr: sympy.Basic) -> Kind:
        boolean = isinstance(expr, Boolean) and not isinstance(expr, sympy.Expr)
        if isinstance(expr, sympy.Symbol):
            return self.kinds.get(expr, CONSTANT)
        if isinstance(expr, BooleanAtom):
            return CONSTANT_BOOL
        symbols = expr.free_symbols
        kinds = [self.kinds.get(s, CONSTANT) for s in symbols]
        if self.reference is not None and expr.has(onehot):
            kinds.append(self.kinds[self.reference])
        return self.join(kinds, boolean)

    # -- statements --------------------------------------------------------------------------------
    def emit(self, op: str, args: tuple, kind: Kind, fresh: bool = True, **extra) -> sympy.Symbol:
        target = self.temp()
        self.kinds[target] = kind
        self.statements.append(Statement(target, op, args, kind, fresh=fresh, **extra))
        return target

    def assign(self, target: sympy.Symbol, expr: sympy.Basic) -> None:
        """`target = expr`: the statements of expr, the last of them writing target."""
        kind = self.kind(expr)
        if not kind.array:
            self.kinds[target] = kind
            self.statements.append(Statement(target, "copy", (expr,), kind))
            return
        before = len(self.statements)
        atom = self.atom(expr)
        last = self.statements[-1] if len(self.statements) > before else None
        if last is not None and last.target == atom:
            last.target = target  # the final operation writes target directly
            self.kinds[target] = last.kind
            self.memo = {k: (target if v == atom else v) for k, v in self.memo.items()}
        else:
            self.kinds[target] = self.kinds.get(atom, kind)
            self.statements.append(Statement(target, "copy", (atom,), self.kinds[target]))

    def step(self, target: sympy.Symbol, op: str, operand: sympy.Basic | None, kind: Kind, **extra) -> None:
        """A program step (`sum`, `collect`, ...) of an operand expression."""
        args = () if operand is None else (self.atom(operand) if self.kind(operand).array else operand,)
        self.kinds[target] = kind
        self.statements.append(Statement(target, op, args, kind, fresh=False, **extra))

    def atom(self, expr: sympy.Basic) -> sympy.Basic:
        """A Symbol holding expr's value (after the statements that compute it), or expr itself when it
        is not an array (printed inline)."""
        kind = self.kind(expr)
        if not kind.array or isinstance(expr, sympy.Symbol):
            return expr
        if expr in self.memo:
            return self.memo[expr]
        result = self._lower(expr, kind)
        self.memo[expr] = result
        return result

    def _lower(self, expr, kind: Kind) -> sympy.Symbol:
        if isinstance(expr, sympy.Add):
            return self._add(expr)
        if isinstance(expr, sympy.Mul):
            return self._mul(expr)
        if isinstance(expr, sympy.Pow):
            return self._pow(expr.base, expr.exp)
        if isinstance(expr, sympy.Piecewise):
            return self._piecewise(expr)
        if isinstance(expr, (sympy.Max, sympy.Min)):
            name = "maximum" if isinstance(expr, sympy.Max) else "minimum"
            args = sorted(expr.args, key=lambda a: not self.kind(a).array)  # arrays first
            acc = self.atom(args[0])
            for arg in args[1:]:
                acc = self.emit("call", (name, acc, self.atom(arg)), self.join([self.kinds_of(acc), self.kind(arg)]))
            return acc
        if isinstance(expr, sympy.core.relational.Relational):
            a, b = self.atom(expr.lhs), self.atom(expr.rhs)
            return self.emit("cmp", (expr.rel_op, a, b), kind, fresh=False)
        if isinstance(expr, (sympy.And, sympy.Or)):
            op = "and" if isinstance(expr, sympy.And) else "or"
            args = sorted(expr.args, key=lambda a: not self.kind(a).array)
            acc = self.atom(args[0])
            for arg in args[1:]:
                acc = self.emit(op, (acc, self.atom(arg)), self.join([self.kinds_of(acc), self.kind(arg)], True),
                                fresh=False)
            return acc
        if isinstance(expr, sympy.Not):
            return self.emit("not", (self.atom(expr.args[0]),), kind, fresh=False)
        if isinstance(expr, onehot):
            return self.emit("onehot", (expr.args[0],), kind, fresh=False)
        if isinstance(expr, sympy.Function) or type(expr).__name__ in ("polygamma",):
            name = ELEMENTWISE_FUNCTIONS.get(type(expr), type(expr).__name__)
            if name == "polygamma":
                order = expr.args[0]
                return self.emit("call", ("polygamma", order, self.atom(expr.args[1])), kind)
            return self.emit("call", (name, *(self.atom(a) for a in expr.args)), kind)
        raise NotImplementedError(f"cannot lower {type(expr).__name__}")  # pragma: no cover - the printer lists all

    def kinds_of(self, atom) -> Kind:
        return self.kinds[atom] if isinstance(atom, sympy.Symbol) and atom in self.kinds else self.kind(atom)

    # -- arithmetic --------------------------------------------------------------------------------
    def _add(self, expr: sympy.Add) -> sympy.Symbol:
        arrays, scalars = [], []
        for term in expr.args:
            (arrays if self.kind(term).array else scalars).append(term)
        positive = [t for t in arrays if not _negative(t)]
        negative = [-t for t in arrays if _negative(t)]
        scalar = sympy.Add(*scalars)
        if positive:
            acc = self.atom(positive[0])
            for term in positive[1:]:
                acc = self._accumulate(acc, term, 1)
        else:
            first = negative.pop(0)
            if scalar != 0:
                acc, scalar = self._binary("sub", scalar, self.atom(first)), sympy.S.Zero
            else:
                acc = self.emit("neg", (self.atom(first),), self.kind(first))
        for term in negative:
            acc = self._accumulate(acc, term, -1)
        if scalar != 0:
            if _negative(scalar):
                acc = self._binary("sub", acc, -scalar)
            else:
                acc = self._binary("add", acc, scalar)
        return acc

    def _accumulate(self, acc, term, sign: int) -> sympy.Symbol:
        """acc + sign*term; with `axpy`, a term k*x (k a number) is added in the same operation."""
        if self.axpy and isinstance(term, sympy.Mul):
            k, rest = term.as_coeff_Mul()
            if k.is_Number and k != 1 and not isinstance(rest, sympy.Mul) and self.kind(rest).array:
                x = self.atom(rest)
                return self.emit("axpy", (acc, x, sign * k), self.join([self.kinds_of(acc), self.kinds_of(x)]))
        return self._binary("add" if sign > 0 else "sub", acc, self.atom(term))

    def _binary(self, op: str, a, b) -> sympy.Symbol:
        return self.emit(op, (a, b), self.join([self.kinds_of(a), self.kinds_of(b)]))

    def size(self, expr) -> int:
        """0 a scalar or constant; 1 the seed (a number, or per-sample weights); 2 per-sample reductions;
        3 full arrays. Small factors are multiplied together before they touch a big array."""
        kind = self.kind(expr)
        if not kind.array:
            return 0
        own = kind.atoms - set(self.absorbed)
        if not own:
            return 1
        return 2 if all(":" in atom for atom in own) else 3

    def _mul(self, expr: sympy.Mul) -> sympy.Symbol:
        scalars = [f for f in expr.args if not self.kind(f).array]
        arrays = [f for f in expr.args if self.kind(f).array]
        big = [f for f in arrays if self.size(f) == 3]
        small = [f for f in arrays if self.size(f) < 3]
        if big and (small or scalars):
            factor = sympy.Mul(*scalars, *small)
            if len(big) == 1 and isinstance(big[0], sympy.Add) and sum(self.size(t) == 3 for t in big[0].args) == 1:
                # s (c + k u) -> (s c) + (s k) u: one pass over u instead of two
                return self.atom(sympy.Add(*[factor * term for term in big[0].args]))
            return self._product(big, factor)
        return self._product(arrays, sympy.Mul(*scalars))

    def _product(self, factors, coefficient) -> sympy.Symbol:
        """factors (arrays) times a coefficient (a scalar, or a small array), divisions one by one."""
        numerator, denominator = [], []
        for factor in factors:
            base, exponent = (factor.base, factor.exp) if isinstance(factor, sympy.Pow) else (factor, sympy.S.One)
            if exponent.is_Integer and 0 < exponent <= 4:
                numerator.extend([base] * int(exponent))
            elif exponent.is_Integer and -4 <= exponent < 0:
                denominator.extend([base] * int(-exponent))
            elif exponent.is_number and exponent.is_negative:
                denominator.append(sympy.Pow(base, -exponent, evaluate=False))
            else:
                numerator.append(factor)
        negate = False
        if coefficient.could_extract_minus_sign():
            coefficient, negate = -coefficient, True
        if numerator:
            acc = self.atom(numerator[0])
            for factor in numerator[1:]:
                acc = self._binary("mul", acc, self.atom(factor))
            for factor in denominator:
                acc = self._binary("div", acc, self.atom(factor))
            if negate and coefficient != 1:
                coefficient, negate = -coefficient, False
            if coefficient != 1:
                acc = self._binary("mul", acc, self.atom(coefficient))
        else:
            top = -coefficient if negate else coefficient
            negate = False
            acc = self._binary("div", self.atom(top), self.atom(denominator[0]))
            for factor in denominator[1:]:
                acc = self._binary("div", acc, self.atom(factor))
        if negate:
            defined = next((st for st in reversed(self.statements) if st.target == acc), None)
            if defined is not None and defined.op == "neg":  # -(-x) is x
                return defined.args[0]
            acc = self.emit("neg", (acc,), self.kinds_of(acc))
        return acc

    def _pow(self, base, exponent) -> sympy.Symbol:
        if exponent.is_Integer and exponent > 0 and exponent <= 4:
            acc = self.atom(base)
            atom = acc
            for _ in range(int(exponent) - 1):
                acc = self._binary("mul", acc, atom)
            return acc
        if exponent.is_Integer and exponent < 0 and exponent >= -4:
            acc = self._binary("div", sympy.S.One, self.atom(base))
            for _ in range(int(-exponent) - 1):
                acc = self._binary("div", acc, self.atom(base))
            return acc
        if exponent == sympy.S.Half:
            return self.emit("call", ("sqrt", self.atom(base)), self.kind(base))
        if exponent == -sympy.S.Half:
            root = self.emit("call", ("sqrt", self.atom(base)), self.kind(base))
            return self._binary("div", sympy.S.One, root)
        return self.emit("pow", (self.atom(base), self.atom(exponent)),
                         self.join([self.kind(base), self.kind(exponent)]))

    def _piecewise(self, expr: sympy.Piecewise) -> sympy.Symbol:
        pieces = list(expr.args)
        acc = self.atom(pieces[-1].expr)
        acc_kind = self.kind(pieces[-1].expr)
        for value, cond in reversed(pieces[:-1]):
            if cond == sympy.S.true:
                acc, acc_kind = self.atom(value), self.kind(value)
                continue
            kind = self.join([self.kind(value), acc_kind, self.kind(cond)])
            acc = self.emit("call", ("where", self.atom(cond), self.atom(value), acc), kind)
            acc_kind = kind
        return acc

    # -- buffers -----------------------------------------------------------------------------------
    def reuse_buffers(self, outputs: Sequence[sympy.Basic]) -> None:
        """Mark statements that can write into a dying temporary operand (`out=`)."""
        if not self.inplace:
            return
        last_use: dict[sympy.Symbol, int] = {}
        for index, statement in enumerate(self.statements):
            for symbol in _symbols(statement):
                last_use[symbol] = index
        live_out = set().union(*(o.free_symbols for o in outputs)) if outputs else set()
        owned: set[sympy.Symbol] = set()
        aliases: dict[sympy.Symbol, sympy.Symbol] = {}  # an in-place result shares its operand's buffer
        for index, statement in enumerate(self.statements):
            if statement.op in IN_PLACE_OPS or (statement.op == "call" and statement.args[0] in IN_PLACE_CALLS):
                operands = statement.args[1:] if statement.op == "call" else statement.args
                for operand in operands:
                    if (isinstance(operand, sympy.Symbol) and operand in owned and last_use.get(operand) == index
                            and operand not in live_out and not self._shared_later(operand, aliases, last_use, index)
                            and self.kinds_of(operand).array and not self.kinds_of(operand).boolean
                            and not statement.kind.boolean and self.kinds_of(operand).atoms == statement.kind.atoms):
                        statement.out = operand
                        aliases[statement.target] = aliases.get(operand, operand)
                        break
            if statement.fresh and statement.kind.array and not statement.kind.boolean:
                owned.add(statement.target)

    def _shared_later(self, operand, aliases, last_use, index) -> bool:
        """True when another live name shares operand's buffer (an earlier in-place chain)."""
        root = aliases.get(operand, operand)
        return any(name != operand and aliases.get(name, name) == root and last_use.get(name, -1) > index
                   for name in list(aliases) + [root])


def _negative(term) -> bool:
    return term.could_extract_minus_sign()


def _symbols(statement: Statement) -> set:
    found = set()
    for arg in statement.args:
        if isinstance(arg, sympy.Basic):
            found |= arg.free_symbols
    if statement.like is not None:
        found.add(statement.like)
    found |= set(statement.context)
    return found
