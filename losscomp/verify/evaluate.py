"""A definition's SymPy expressions evaluated on arrays: in float64 (NumPy), or at high precision
(NumPy object arrays of mpmath numbers), the reference every emitted function is held to.

This is an interpreter over the expression tree, one short rule per SymPy class, never a printer plus
`exec`: it runs only losscomp's own expressions, and it must not share code with the backends it
checks. Reductions (`ir.Reduction`) are evaluated over their axes with kept dimensions, as the emitted
code does, so a per-sample loss evaluates to shape (batch, 1) and an elementwise one to the shape of
its broadcast arguments.

At high precision every value is an `mpmath.mpf` with an unbounded exponent: exp(1000) is a number,
not inf, so the oracle also says whether the true value is representable in float64 at all.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import mpmath
import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1, log1p
from sympy.logic.boolalg import BooleanFalse, BooleanTrue

from .. import functions as _functions

FLOAT64_MAX = float(np.finfo(np.float64).max)


# -- float64 --------------------------------------------------------------------------------------

def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


class FloatKit:
    """float64 arithmetic on NumPy arrays (features, kink functions, quick references)."""

    name = "float64"

    def number(self, value: sympy.Expr):
        return float(value)

    def array(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    unary: dict[str, Callable] = {
        "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "sin": np.sin, "cos": np.cos,
        "tan": np.tan, "tanh": np.tanh, "sinh": np.sinh, "cosh": np.cosh, "abs": np.abs, "sign": np.sign,
        "sigmoid": _sigmoid, "softplus": _softplus, "relu": lambda x: np.maximum(x, 0), "sqrt": np.sqrt,
        "erf": np.vectorize(math.erf, otypes=[float]), "loggamma": np.vectorize(math.lgamma, otypes=[float]),
    }

    def add(self, a, b):
        return a + b

    def mul(self, a, b):
        return a * b

    def power(self, base, exponent: sympy.Expr):
        if exponent == sympy.S.Half:
            return np.sqrt(base)
        return np.power(base, float(exponent)) if not exponent.is_integer else np.power(base, float(int(exponent)))

    def compare(self, op: str, a, b):
        return {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
                "==": np.equal, "!=": np.not_equal}[op](a, b)

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def minimum(self, a, b):
        return np.minimum(a, b)

    def polygamma(self, m: int, x):
        raise NotImplementedError("polygamma in float64")

    def reduce(self, kind: str, x, axes: tuple[int, ...]):
        if kind == "sum":
            return np.sum(x, axis=axes, keepdims=True)
        if kind == "logsumexp":
            m = np.max(x, axis=axes, keepdims=True)
            return m + np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True))
        if kind == "max":  # the shift of a logsumexp; its value cancels, so any finite one will do
            m = np.max(x, axis=axes, keepdims=True)
            return np.where(np.isfinite(m), m, 0.0)
        raise NotImplementedError(kind)

    def constant(self, value: float, shape: tuple[int, ...]):
        return np.full(shape, float(value))


# -- high precision -------------------------------------------------------------------------------

def _real(v):
    """An mpc with a negligible imaginary part is real; a truly complex value is not a number here."""
    if isinstance(v, mpmath.mpc):
        return v.real if abs(v.imag) <= abs(v.real) * mpmath.mpf(10) ** (-mpmath.mp.dps + 5) else mpmath.nan
    return v


def _safe(f):
    """f elementwise; a division by zero (the only thing mpmath raises for) gives inf, never an exception."""
    def g(*args):
        try:
            return _real(f(*args))
        except ZeroDivisionError:
            return mpmath.inf
        except (ValueError, TypeError):
            return mpmath.nan
    return np.frompyfunc(g, f.__code__.co_argcount if hasattr(f, "__code__") else 1, 1)


def _mp_sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def _mp_softplus(x):
    return mpmath.log1p(mpmath.exp(x)) if x < 0 else x + mpmath.log1p(mpmath.exp(-x))


def _mp_sign(x):
    return mpmath.mpf(1) if x > 0 else (mpmath.mpf(-1) if x < 0 else mpmath.mpf(0))


class MpKit:
    """Arithmetic on object arrays of mpmath numbers at the working precision (`mpmath.workdps`)."""

    name = "mpmath"

    def __init__(self):
        u = lambda f: _safe(lambda x: f(x))  # noqa: E731 - one-line adapters
        self.unary = {
            "exp": u(mpmath.exp), "log": u(lambda x: mpmath.log(x) if x != 0 else -mpmath.inf),
            "log1p": u(lambda x: mpmath.log1p(x) if x != -1 else -mpmath.inf), "expm1": u(mpmath.expm1),
            "sin": u(mpmath.sin), "cos": u(mpmath.cos), "tan": u(mpmath.tan), "tanh": u(mpmath.tanh),
            "sinh": u(mpmath.sinh), "cosh": u(mpmath.cosh), "abs": u(abs), "sign": u(_mp_sign),
            "sigmoid": u(_mp_sigmoid), "softplus": u(_mp_softplus), "relu": u(lambda x: x if x > 0 else 0 * x),
            "sqrt": u(mpmath.sqrt), "erf": u(mpmath.erf),
            "loggamma": u(lambda x: mpmath.log(abs(mpmath.gamma(x))) if x != int(x) or x > 0 else mpmath.inf),
        }
        self._add = _safe(lambda a, b: a + b)
        self._mul = _safe(lambda a, b: a * b)
        self._pow = _safe(lambda a, k: mpmath.power(a, k))
        self._recip = _safe(lambda a: 1 / a)
        self._cmp = {op: np.frompyfunc(f, 2, 1) for op, f in {
            "<": lambda a, b: bool(_real(a) < _real(b)), "<=": lambda a, b: bool(_real(a) <= _real(b)),
            ">": lambda a, b: bool(_real(a) > _real(b)), ">=": lambda a, b: bool(_real(a) >= _real(b)),
            "==": lambda a, b: bool(a == b), "!=": lambda a, b: bool(a != b)}.items()}

    def number(self, value: sympy.Expr):
        if value.is_Rational:
            return mpmath.mpf(int(value.p)) / int(value.q)
        return mpmath.mpf(sympy.Float(value, mpmath.mp.dps + 5)._mpf_) if value.is_Float else \
            mpmath.mpf(str(sympy.N(value, mpmath.mp.dps + 5)))

    def array(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        out = np.empty(values.shape, dtype=object)
        flat = out.reshape(-1)
        for i, v in enumerate(values.reshape(-1).tolist()):
            flat[i] = mpmath.mpf(v)  # exact: a float64 is a binary fraction
        return out

    def add(self, a, b):
        return self._add(a, b)

    def mul(self, a, b):
        return self._mul(a, b)

    def power(self, base, exponent: sympy.Expr):
        if exponent.is_Integer and exponent < 0:
            return self._recip(self._pow(base, int(-exponent)))
        k = int(exponent) if exponent.is_Integer else self.number(exponent)
        return self._pow(base, k)

    def compare(self, op: str, a, b):
        return np.asarray(self._cmp[op](a, b), dtype=bool)

    def where(self, cond, a, b):
        a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
        return np.where(np.asarray(cond, dtype=bool), a, b)

    def maximum(self, a, b):
        return self.where(self.compare(">=", a, b), a, b)

    def minimum(self, a, b):
        return self.where(self.compare("<=", a, b), a, b)

    def polygamma(self, m: int, x):
        return _safe(lambda v: mpmath.psi(m, v))(x)

    def reduce(self, kind: str, x, axes: tuple[int, ...]):
        x = np.asarray(x, dtype=object)
        if kind == "sum":
            return np.sum(x, axis=axes, keepdims=True)
        if kind == "logsumexp":
            moved = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
            rows = moved.reshape(moved.shape[:moved.ndim - len(axes)] + (-1,))
            out = np.empty(rows.shape[:-1], dtype=object)
            for index in np.ndindex(out.shape):
                values = list(rows[index])
                m = max(values)
                out[index] = m + mpmath.log(mpmath.fsum(mpmath.exp(v - m) for v in values))
            return np.expand_dims(out, axes)
        if kind == "max":  # the shift of a logsumexp; its value cancels, so any finite one will do
            moved = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
            rows = moved.reshape(moved.shape[:moved.ndim - len(axes)] + (-1,))
            out = np.empty(rows.shape[:-1], dtype=object)
            for index in np.ndindex(out.shape):
                m = max(rows[index])
                out[index] = m if mpmath.isfinite(m) else mpmath.mpf(0)
            return np.expand_dims(out, axes)
        raise NotImplementedError(kind)

    def constant(self, value, shape: tuple[int, ...]):
        out = np.empty(shape, dtype=object)
        out.fill(mpmath.mpf(value))
        return out


def to_float(values) -> np.ndarray:
    """float64 values of an mpmath array: +-inf beyond the float64 range, nan for a non-number."""
    values = np.asarray(values, dtype=object)
    out = np.empty(values.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, v in enumerate(values.reshape(-1).tolist()):
        v = _real(v)
        flat[i] = float(v) if abs(v) <= FLOAT64_MAX or not mpmath.isfinite(v) else math.copysign(math.inf, v)
    return out


def representable(values) -> np.ndarray:
    """True where an mpmath value is a finite number that float64 can hold."""
    values = np.asarray(values, dtype=object)
    return np.vectorize(lambda v: bool(mpmath.isfinite(_real(v)) and abs(_real(v)) <= FLOAT64_MAX),
                        otypes=[bool])(values) if values.size else np.zeros(values.shape, bool)


# -- the interpreter ------------------------------------------------------------------------------

_UNARY = {
    sympy.exp: "exp", sympy.log: "log", log1p: "log1p", expm1: "expm1", sympy.sin: "sin", sympy.cos: "cos",
    sympy.tan: "tan", sympy.tanh: "tanh", sympy.sinh: "sinh", sympy.cosh: "cosh", sympy.Abs: "abs",
    sympy.sign: "sign", sympy.erf: "erf", sympy.loggamma: "loggamma",
    _functions.sigmoid: "sigmoid", _functions.softplus: "softplus", _functions.relu: "relu",
}
_RELATIONS = {sympy.StrictLessThan: "<", sympy.LessThan: "<=", sympy.StrictGreaterThan: ">",
              sympy.GreaterThan: ">=", sympy.Equality: "==", sympy.Unequality: "!="}
_ONEHOT = getattr(_functions, "onehot", None)


class UnknownSymbol(KeyError):
    """An expression mentions a symbol that has no value here."""


class Model:
    """The arrays a definition is made of: arguments, parameters and reductions, given values.

    `inputs` maps argument names to arrays (index labels as integers); parameters take the float64
    value the emitted code uses, so a kink at `abs(e) == delta` is where float64 puts it.
    """

    def __init__(self, definition, parameters: Mapping[str, float] | None = None):
        self.definition = definition
        self.arguments = tuple(definition.arguments)
        values = {p.name: float(p.default) for p in definition.parameters}
        values.update(parameters or {})
        self.parameters = {p.symbol: values[p.name] for p in definition.parameters}
        self.reductions = {r.symbol: r for r in getattr(definition, "reductions", ())}

    def context_shape(self, inputs: Mapping[str, np.ndarray]) -> tuple[int, ...]:
        """The broadcast shape of the non-label arguments: the shape of an elementwise loss."""
        shapes = [np.shape(inputs[a.name]) for a in self.arguments if a.domain != "index"]
        return tuple(np.broadcast_shapes(*shapes)) if shapes else tuple(np.shape(next(iter(inputs.values()))))

    def environment(self, inputs: Mapping[str, np.ndarray], kit) -> dict:
        env: dict = {}
        for a in self.arguments:
            x = np.asarray(inputs[a.name])
            env[a.symbol] = x if a.domain == "index" else kit.array(x)
        for symbol, value in self.parameters.items():
            env[symbol] = mpmath.mpf(value) if isinstance(kit, MpKit) else value  # exactly the float64
        env["__shape__"] = self.context_shape(inputs)
        return env

    def evaluate(self, expr: sympy.Basic, inputs: Mapping[str, np.ndarray], kit=None, env: dict | None = None):
        """`expr` at `inputs`, broadcast as NumPy would; reductions keep their axes."""
        kit = kit or FloatKit()
        env = env if env is not None else self.environment(inputs, kit)
        return _Interpreter(self, kit, env).run(expr)


def axes_of(axis: str, ndim: int) -> tuple[int, ...]:
    """Axes of a reduction: 'sample' is every axis but the batch axis; 'all' every axis; '-1' one axis."""
    if axis == "all":
        return tuple(range(ndim))
    if axis == "sample":
        return tuple(range(1, ndim)) or (0,)
    return (int(axis) % ndim,)


class _Interpreter:
    def __init__(self, model: Model, kit, env: dict):
        self.model = model
        self.kit = kit
        self.env = env
        self.memo: dict = {}

    def run(self, expr: sympy.Basic):
        if expr in self.memo:
            return self.memo[expr]
        value = self._eval(expr)
        self.memo[expr] = value
        return value

    def _eval(self, expr: sympy.Basic):
        kit = self.kit
        if isinstance(expr, (BooleanTrue, bool)) and expr:
            return True
        if isinstance(expr, BooleanFalse):
            return False
        if expr.is_Number or isinstance(expr, sympy.NumberSymbol):
            return kit.number(expr)
        if isinstance(expr, sympy.Symbol):
            if expr in self.env:
                return self.env[expr]
            if expr in self.model.reductions:
                self.env[expr] = self._reduction(self.model.reductions[expr])
                return self.env[expr]
            raise UnknownSymbol(expr.name)
        if isinstance(expr, sympy.Add):
            return self._fold(kit.add, expr.args)
        if isinstance(expr, sympy.Mul):
            return self._fold(kit.mul, expr.args)
        if isinstance(expr, sympy.Pow):
            base, exponent = expr.args
            if not exponent.free_symbols:
                return kit.power(self.run(base), exponent)
            return self.run(sympy.exp(exponent * sympy.log(base)))
        if isinstance(expr, sympy.Piecewise):
            result = None
            for value, cond in reversed(expr.args):
                v = self.run(value)
                result = v if result is None else kit.where(self._condition(cond), v, result)
            return result
        if isinstance(expr, (sympy.Max, sympy.Min)):
            pair = kit.maximum if isinstance(expr, sympy.Max) else kit.minimum
            return self._fold(pair, expr.args)
        if isinstance(expr, _functions.clip):
            x, lo, hi = (self.run(a) for a in expr.args)
            return kit.minimum(kit.maximum(x, lo), hi)
        if isinstance(expr, sympy.polygamma) and expr.args[0].is_Integer:
            return kit.polygamma(int(expr.args[0]), self.run(expr.args[1]))
        if _ONEHOT is not None and isinstance(expr, _ONEHOT):
            return self._onehot(expr.args[0])
        name = _UNARY.get(type(expr))
        if name is not None:
            return kit.unary[name](self.run(expr.args[0]))
        raise NotImplementedError(f"cannot evaluate {type(expr).__name__}")

    def _fold(self, op, args: Sequence[sympy.Basic]):
        result = self.run(args[0])
        for a in args[1:]:
            result = op(result, self.run(a))
        return result

    def _condition(self, cond: sympy.Basic):
        if cond is sympy.true or cond is True:
            return True
        if cond is sympy.false or cond is False:
            return False
        op = _RELATIONS.get(type(cond))
        if op is not None:
            return self.kit.compare(op, self.run(cond.args[0]), self.run(cond.args[1]))
        if isinstance(cond, sympy.And):
            return np.logical_and.reduce([np.asarray(self._condition(c), bool) for c in cond.args])
        if isinstance(cond, sympy.Or):
            return np.logical_or.reduce([np.asarray(self._condition(c), bool) for c in cond.args])
        if isinstance(cond, sympy.Not):
            return np.logical_not(self._condition(cond.args[0]))
        raise NotImplementedError(f"cannot evaluate the condition {type(cond).__name__}")

    def _reduction(self, r):
        shape = self.env["__shape__"]
        operand = np.broadcast_to(np.asarray(self.run(r.operand), dtype=object if isinstance(self.kit, MpKit)
                                             else np.float64), shape)
        axes = axes_of(r.axis, len(shape))
        if r.kind == "count":
            size = int(np.prod([shape[a] for a in axes]))
            return self.kit.constant(size, tuple(1 if i in axes else n for i, n in enumerate(shape)))
        return self.kit.reduce(r.kind, operand, axes)

    def _onehot(self, label: sympy.Symbol):
        labels = np.asarray(self.env[label]).astype(np.int64)
        classes = self.env["__shape__"][-1]
        eye = np.eye(classes)[labels]
        return self.kit.array(eye) if isinstance(self.kit, MpKit) else eye
