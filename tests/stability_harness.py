"""The machinery behind tests/test_stability.py and docs/stability_table.py: extreme inputs per
domain, a 50-digit mpmath reference for every quantity the emitted code returns, a conditioning
estimate for each, and the comparison rule.

Inputs
    Every argument takes the extremes of its declared domain (`EDGES`, `ROWS`), in float64 and in
    float32 (float32 inputs are the float32 values themselves; the reference is computed from those
    exact values). An elementwise loss is evaluated on the full product grid of its arguments' values
    (1-D arrays); a loss that reduces per sample on rows of width 3 (the product of each argument's
    rows, at most `MAX_ROWS` of them); `dice` (axis=all) on one batch.

Reference
    The derivation *as derived*, `losscomp.compile(source, rewrites=False)`: its forward, backward
    and tangent programs (and, for elementwise losses, the Hessian diagonal) are run by the
    high-precision interpreter of `losscomp.verify.evaluate` (`Model`, `MpKit`), plus a small adapter
    here for the program steps (seed, collect) and for two conventions the interpreter lacks:
    0 * +-inf = 0 (a term whose weight is exactly 0 vanishes: 0 log 0 = 0, the limit), and the
    functions `xlogy` and `root` of the rewritten programs (as x log y with 0 at x = 0, and sqrt).
    Precision: 60 significant digits, raised for the units (elements or rows) whose inputs are large
    when the programs contain exponentials: 60 + min(2 max|x|, 1500) / ln 10 digits, which resolves
    any cancellation of exp(-2 max|x|) against 1 down to exp(-1500) (far below the float64 range).
    Cross-check: the rewritten programs (what `compile()` prints) are evaluated the same way; every
    quantity must agree with the reference to 1e-30 relative (or both be below 1e-15 times the
    dtype's smallest normal number, zero for every comparison below). A unit that disagrees is
    recomputed, both ways, at 2 D + 50 digits (at least 80 + that exponent), then with enough digits
    for exp(-max|x|) and for exp(-2 max|x|) against 1 (a log after such a cancellation needs them
    all: the textbook log(1 - sigmoid(1e4)) takes 4,400 digits); one that still disagrees is
    reported as unresolved (a rewrite that is not an identity, or a precision this rule misses).

Conditioning
    For each reference quantity Q (a loss value, a gradient, Hessian or hvp entry) its sensitivity
    s = sum_i |Q(x + d_i) - Q(x - d_i)| / (2 u), d_i = u |x_i| on one continuous input entry x_i at a
    time, u the unit roundoff of the dtype (2^-53, 2^-24): s = sum_i |x_i dQ/dx_i| where Q is smooth
    at the scale of the dtype's rounding, and large where a kink or branch switch lies within
    rounding distance. Labels (binary, sign, count, index) are exact and never perturbed; parameters
    neither. kappa = s / |Q| is the componentwise relative condition number.

Comparison
    A quantity whose reference is finite and within the dtype's range must be finite, and within
        |emitted - reference| <= rtol * max(|reference|, s) + tiny
    rtol = 1e-12 (float64), 1e-5 (float32); tiny = the dtype's smallest normal number (a result in
    the subnormal range has only absolute accuracy). Equivalently: relative error <= rtol * max(1,
    kappa). A point is *ill-conditioned* when rtol * kappa >= 1: the rule then asks no relative
    accuracy of it (it is counted, not excluded from the finiteness check). A reference beyond the
    dtype's range (exp(1e4) in poisson_nll) is *exempt*: the emitted result may be +-inf there (and
    only there), and NumPy may warn about that overflow (and only about it).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import warnings
from dataclasses import dataclass, field

import mpmath
import numpy as np
import sympy

import losscomp
from losscomp.functions import root, xlogy
from losscomp.verify.evaluate import Model, MpKit, axes_of

DTYPES = ("float64", "float32")
BACKENDS = ("numpy", "torch", "tensorflow", "jax")
RTOL = {"float64": 1e-12, "float32": 1e-5}
UNIT_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24}
TINY = {"float64": float(np.finfo(np.float64).tiny), "float32": float(np.finfo(np.float32).tiny)}
HUGE = {"float64": float(np.finfo(np.float64).max), "float32": float(np.finfo(np.float32).max)}
BASE_DIGITS = 60
MAX_EXPONENT_SPAN = 1500.0   # exp(-1500): far below the smallest float64 (exp(-745))
AGREE = mpmath.mpf("1e-30")
NEGLIGIBLE = {d: mpmath.mpf(TINY[d]) * mpmath.mpf("1e-15") for d in DTYPES}  # zero for every comparison
MAX_ROWS = 30
CONTINUOUS = ("real", "positive", "nonnegative", "unit", "simplex")

_F32_1E7 = float(np.float32(1e-7))             # 1.0000000116860974e-07
_F32_ONE_MINUS = float(np.float32(1 - 1e-7))   # = 1 - 2**-23, the float32 nearest 1 - 1e-7
assert _F32_ONE_MINUS == 1 - 2.0 ** -23

# Elementwise values of each domain at the extremes (and a few ordinary values between them).
EDGES: dict[str, dict[str, tuple[float, ...]]] = {
    "float64": {
        "real": (0.0, 1e-9, -1e-9, 0.5, -0.5, 3.0, -3.0, 40.0, -40.0, 700.0, -700.0, 1e4, -1e4),
        "positive": (1e-12, 0.7, 1e12),
        "nonnegative": (0.0, 1e-9, 0.5, 1.0, 3.0, 1e4),
        "unit": (1e-7, 0.25, 0.5, 1 - 1e-7, 1 - 2.0 ** -53),
        "binary": (0.0, 1.0),
        "sign": (-1.0, 1.0),
        "count": (0.0, 1.0, 7.0, 1e6),
    },
    "float32": {
        "real": (0.0, 1e-9, -1e-9, 0.5, -0.5, 3.0, -3.0, 17.0, -17.0, 40.0, -40.0, 80.0, -80.0),
        "positive": (1e-12, 0.7, 1e12),
        "nonnegative": (0.0, 1e-9, 0.5, 1.0, 3.0, 80.0),
        "unit": (_F32_1E7, 0.25, 0.5, _F32_ONE_MINUS, 1 - 2.0 ** -24),
        "binary": (0.0, 1.0),
        "sign": (-1.0, 1.0),
        "count": (0.0, 1.0, 7.0, 1e6),
    },
}
# gaussian_nll has three arguments: its observation y takes fewer values, so the grid stays small.
REDUCED_REAL = {"float64": (0.0, -3.0, 1e4, -1e4), "float32": (0.0, -3.0, 80.0, -80.0)}

# Rows (width 3) for the arguments of losses that reduce per sample.
ROWS: dict[str, dict[str, tuple[tuple[float, ...], ...]]] = {
    "float64": {
        "real": ((1e4, -1e4, 0.0), (-1e4, -1e4, -1e4), (1e4, 1e4 - 1, -700.0), (0.5, -3.0, 40.0),
                 (700.0, -700.0, 1e-9), (1e-9, 0.0, -1e-9)),
        "simplex": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (1 - 1e-7, 1e-7, 0.0), (1 - 2e-7, 1e-7, 1e-7),
                    (1 / 3, 1 / 3, 1 / 3)),
        "unit": ((1e-7, 1 - 1e-7, 0.5), (0.5, 0.25, 1e-7), (1 - 2.0 ** -53, 1e-7, 0.25), (0.25, 0.5, 0.75)),
        "binary": ((1.0, 0.0, 1.0), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        "index": ((0,), (1,), (2,)),
    },
    "float32": {
        "real": ((80.0, -80.0, 0.0), (-80.0, -80.0, -80.0), (80.0, 79.0, -17.0), (0.5, -3.0, 40.0),
                 (17.0, -17.0, 1e-9), (1e-9, 0.0, -1e-9)),
        "simplex": ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (_F32_ONE_MINUS, 2.0 ** -23, 0.0),
                    (1 - 2.0 ** -22, 2.0 ** -23, 2.0 ** -23), (1 / 3, 1 / 3, 1 / 3)),
        "unit": ((_F32_1E7, _F32_ONE_MINUS, 0.5), (0.5, 0.25, _F32_1E7), (1 - 2.0 ** -24, _F32_1E7, 0.25),
                 (0.25, 0.5, 0.75)),
        "binary": ((1.0, 0.0, 1.0), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
        "index": ((0,), (1,), (2,)),
    },
}

# Textbook sources the rewrite pass must fix (docs/stability.md measures them with and without it).
NAIVE_SOURCES = {
    "bce_naive": "bce_naive(y: binary, z) = -(y*log(sigmoid(z)) + (1-y)*log(1-sigmoid(z)))",
    "softmax_naive": "softmax_naive(y: simplex, z) = -sum(y*log(exp(z)/sum(exp(z))))",
    "logcosh_naive": "logcosh_naive(y, p) = log(cosh(p - y))",
    "kl_naive": "kl_naive(p: simplex, q: unit) = sum(p*log(p/q))",
    "log1p_naive": "log1p_naive(y, p) = log(1 + (y - p)^2)",
    "sigmoid_exp_naive": "sigmoid_exp_naive(y: binary, z) = -(y*log(1/(1 + exp(-z))) + (1-y)*log(1 - 1/(1 + exp(-z))))",
    "softplus_naive": "softplus_naive(y, z) = log(1 + exp(z)) - y*z",
    "expm1_naive": "expm1_naive(y, z) = (exp(z - y) - 1)^2",
}

_EXPONENTIAL = (sympy.exp, sympy.cosh, sympy.sinh, sympy.tanh)


# ---------------------------------------------------------------------------------------------
# Cases: a compiled loss (with and without rewrites) and its extreme inputs
# ---------------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    source: str
    stable: object                 # CompiledLoss, rewrites=True (what users get)
    naive: object                  # CompiledLoss, rewrites=False (the derivatives as derived)
    domains: dict = field(default_factory=dict)

    @property
    def arguments(self) -> tuple[str, ...]:
        return tuple(self.domains)

    @property
    def targets(self) -> tuple[str, ...]:
        return self.stable.targets

    @property
    def elementwise(self) -> bool:
        return self.stable.derivation.elementwise

    @property
    def batch_coupled(self) -> bool:
        """A reduction over axis=all: the whole batch is one unit."""
        return any(r.axis == "all" for r in self.stable.definition.reductions)

    @property
    def continuous(self) -> tuple[str, ...]:
        return tuple(a for a, d in self.domains.items() if d in CONTINUOUS)

    @property
    def exponential(self) -> bool:
        """Whether the derivation contains exponentials (whose cancellations need more digits)."""
        spec = self.naive.spec()
        exprs = [spec.value] + [s.expr for s in spec.tangent.steps] + [h for row in spec.diagonal for h in row]
        kinds = {s.op for s in spec.tangent.steps}
        from losscomp.functions import sigmoid, softplus
        return "logsumexp" in kinds or any(e.has(*_EXPONENTIAL, sigmoid, softplus) for e in exprs)


@functools.lru_cache(maxsize=None)
def case(name: str) -> Case:
    """A catalog loss or one of NAIVE_SOURCES, compiled with reduction='none' both ways."""
    source = NAIVE_SOURCES.get(name, name)
    stable = losscomp.compile(source, reduction="none")
    naive = losscomp.compile(source, reduction="none", rewrites=False)
    domains = {a.name: a.domain for a in stable.definition.arguments}
    return Case(name, source, stable, naive, domains)


@functools.lru_cache(maxsize=None)
def inputs(name: str, dtype: str) -> dict[str, np.ndarray]:
    """The extreme inputs of a case, as arrays of `dtype` (index labels as int64)."""
    c = case(name)
    if c.elementwise:
        columns = []
        for i, (arg, domain) in enumerate(c.domains.items()):
            values = EDGES[dtype][domain]
            if name == "gaussian_nll" and arg == "y":
                values = REDUCED_REAL[dtype]
            columns.append(values)
        grid = np.array(list(itertools.product(*columns)), dtype=np.float64)
        return {arg: grid[:, i].astype(dtype) for i, arg in enumerate(c.arguments)}
    rows = [ROWS[dtype][domain] for domain in c.domains.values()]
    combos = list(itertools.product(*rows))
    if c.batch_coupled:
        combos = combos[:4]
    elif len(combos) > MAX_ROWS:
        pick = np.random.default_rng(7).choice(len(combos), size=MAX_ROWS, replace=False)
        combos = [combos[i] for i in sorted(pick)]
    out = {}
    for i, (arg, domain) in enumerate(c.domains.items()):
        block = np.array([combo[i] for combo in combos])
        out[arg] = block[:, 0].astype(np.int64) if domain == "index" else block.astype(dtype)
    return out


def hvp_direction(shape, salt: int = 0) -> np.ndarray:
    """A fixed direction for hvp: 1, -0.5, 2, -0.25, ... (exact in float32)."""
    pattern = np.array([1.0, -0.5, 2.0, -0.25, 0.75])
    n = int(np.prod(shape))
    return np.roll(np.resize(pattern, n), salt).reshape(shape)


def units(name: str, dtype: str) -> int:
    """How many independent units the inputs hold: elements, rows, or 1 (axis=all)."""
    c = case(name)
    if c.batch_coupled:
        return 1
    return len(next(iter(inputs(name, dtype).values())))


def unit_inputs(name: str, dtype: str, unit: int) -> dict:
    """The inputs of one unit, for messages."""
    data = inputs(name, dtype)
    if case(name).batch_coupled:
        return {k: v.tolist() for k, v in data.items()}
    return {k: (v[unit].tolist() if np.ndim(v) else v) for k, v in data.items()}


# ---------------------------------------------------------------------------------------------
# The high-precision program evaluator (an adapter over losscomp.verify.evaluate)
# ---------------------------------------------------------------------------------------------

def _zero_safe(f):
    def g(*args):
        try:
            v = f(*args)
        except ZeroDivisionError:
            return mpmath.inf
        if isinstance(v, mpmath.mpc):
            return v.real if abs(v.imag) <= abs(v.real) * mpmath.mpf(10) ** (-mpmath.mp.dps + 5) else mpmath.nan
        return v
    return np.frompyfunc(g, 2, 1)


def _mul(a, b):
    if (a == 0 and mpmath.isinf(b)) or (b == 0 and mpmath.isinf(a)):
        return mpmath.mpf(0)
    return a * b


class ReferenceKit(MpKit):
    """MpKit with 0 * +-inf = 0 (a term with an exactly zero weight vanishes: 0 log 0 = 0)."""

    def __init__(self):
        super().__init__()
        self._mul = _zero_safe(_mul)


def _plain(expr: sympy.Expr) -> sympy.Expr:
    """xlogy and root, which the interpreter lacks, as the functions they stand for."""
    expr = sympy.sympify(expr)
    if expr.has(xlogy):
        expr = expr.replace(xlogy, lambda x, y: sympy.Piecewise((0, sympy.Eq(x, 0)), (x * sympy.log(y), True)))
    if expr.has(root):
        expr = expr.replace(root, lambda u: sympy.sqrt(u))
    return expr


def _reduce_max(x: np.ndarray, axes: tuple) -> np.ndarray:
    moved = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
    rows = moved.reshape(moved.shape[:moved.ndim - len(axes)] + (-1,))
    out = np.empty(rows.shape[:-1], dtype=object)
    for index in np.ndindex(out.shape):
        out[index] = max(rows[index])
    return np.expand_dims(out, axes)


def _sum_to(d: np.ndarray, shape: tuple) -> np.ndarray:
    lead = d.ndim - len(shape)
    if lead:
        d = d.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and d.shape[i] != 1)
    return d.sum(axis=axes, keepdims=True) if axes else d


class ProgramEvaluator:
    """Runs the programs of one compiled loss (its Spec: what the printers print) at high precision.

    Quantities: ('loss',) per element/sample; ('grad', t); ('hvp', t) for a fixed direction;
    ('hess', ti, tj): elementwise diagonal entries, per-sample blocks (batch, d, d), or the whole
    matrix (axis=all), shaped as the emitted `hessian` returns them.
    """

    def __init__(self, compiled):
        self.compiled = compiled
        self.spec = compiled.spec()
        self.model = Model(compiled.definition, {p.name: float(p.default) for p in compiled.definition.parameters})
        self.kit = ReferenceKit()
        self.arguments = compiled.definition.arguments
        self.targets = compiled.targets
        self.value = _plain(self.spec.value)
        self.backward = [(s, _plain(s.expr)) for s in self.spec.backward.steps]
        self.forward = [(s, _plain(s.expr)) for s in self.spec.forward.steps]
        tangent = [(s, _plain(s.expr)) for s in self.spec.tangent.steps]
        n = len(self.backward)
        assert [s for s, _ in tangent[:n]] == [s for s, _ in self.backward]
        self.tangent_tail = tangent[n:]
        self.diagonal = [[_plain(h) for h in row] for row in self.spec.diagonal]
        self.v_symbols = [sympy.Symbol(name, real=True) for name in self.spec.tangent_inputs]
        self.elementwise = bool(self.spec.diagonal)
        self.per_sample = self.spec.per_sample

    # -- one program run ------------------------------------------------------------------------
    def _env(self, values: dict) -> dict:
        env: dict = {}
        shapes = []
        for a in self.arguments:
            x = values[a.name]
            env[a.symbol] = x
            if a.domain != "index":
                shapes.append(np.shape(x))
        for symbol, value in self.model.parameters.items():
            env[symbol] = mpmath.mpf(value)
        env["__shape__"] = tuple(np.broadcast_shapes(*shapes))
        return env

    def _eval(self, expr, env):
        return self.model.evaluate(expr, {}, self.kit, env)

    def _run(self, steps, env: dict) -> None:
        kit = self.kit
        for step, expr in steps:
            shape = env["__shape__"]
            if step.op in ("sum", "logsumexp"):
                operand = np.broadcast_to(np.asarray(self._eval(expr, env), dtype=object), shape)
                env[step.symbol] = kit.reduce(step.op, operand, axes_of(step.axis, len(shape)))
            elif step.op == "max":   # the shift of a split logsumexp: no derivative flows through it
                operand = np.broadcast_to(np.asarray(self._eval(expr, env), dtype=object), shape)
                env[step.symbol] = _reduce_max(operand, axes_of(step.axis, len(shape)))
            elif step.op == "count":
                axes = axes_of(step.axis, len(shape))
                size = int(np.prod([shape[a] for a in axes]))
                env[step.symbol] = kit.constant(size, tuple(1 if i in axes else n for i, n in enumerate(shape)))
            elif step.op == "seed":
                env[step.symbol] = mpmath.mpf(1)   # reduction='none': derivatives of the sum of the values
            elif step.op == "collect":
                d = np.asarray(self._eval(expr, env), dtype=object)
                like = np.shape(env[step.like])
                full = np.broadcast_shapes(np.shape(d), like, *(np.shape(env[c]) for c in step.context))
                env[step.symbol] = _sum_to(np.broadcast_to(d, full), like)
            else:  # pragma: no cover
                raise ValueError(step.op)

    def _context_shape(self, env) -> tuple:
        names = set(self.spec.context)
        shapes = [np.shape(v) for k, v in env.items() if isinstance(k, sympy.Symbol) and k.name in names]
        return tuple(np.broadcast_shapes(*shapes)) if shapes else ()

    def _hvp(self, env: dict, vs) -> list[np.ndarray]:
        local = dict(env)
        for symbol, v in zip(self.v_symbols, vs):
            local[symbol] = v
        self._run(self.tangent_tail, local)
        return [np.asarray(np.broadcast_to(np.asarray(local[o], dtype=object),
                                           np.shape(env[self._target_symbol(t)])), dtype=object)
                if o in local else None for o, t in zip(self.spec.tangent.outputs, self.targets)]

    def _target_symbol(self, name):
        return next(a.symbol for a in self.arguments if a.name == name)

    def quantities(self, values: dict, directions: dict) -> dict:
        """Every quantity at `values` (mpf object arrays; index labels as int arrays)."""
        env = self._env(values)
        self._run(self.backward, env)
        out: dict = {}
        value = np.asarray(self._eval(self.value, env), dtype=object)
        shape = np.broadcast_shapes(np.shape(value), self._context_shape(env))
        out[("loss",)] = np.array(np.broadcast_to(value, shape), dtype=object)
        shapes = {t: np.shape(env[self._target_symbol(t)]) for t in self.targets}
        for t, o in zip(self.targets, self.spec.backward.outputs):
            out[("grad", t)] = np.array(np.broadcast_to(np.asarray(env[o], dtype=object), shapes[t]), dtype=object)
        vs = [directions[t] for t in self.targets]
        for t, hv in zip(self.targets, self._hvp(env, vs)):
            out[("hvp", t)] = hv
        zero = mpmath.mpf(0)
        if self.elementwise:
            context = self._context_shape(env)
            for i, ti in enumerate(self.targets):
                for j, tj in enumerate(self.targets):
                    h = np.asarray(self._eval(self.diagonal[i][j], env), dtype=object)
                    out[("hess", ti, tj)] = _sum_to(np.broadcast_to(h, np.broadcast_shapes(np.shape(h), context)),
                                                    shapes[ti])
            return out
        for j, tj in enumerate(self.targets):
            shape_j = shapes[tj]
            positions = list(np.ndindex(shape_j[1:] if self.per_sample else shape_j))
            columns = {ti: [] for ti in self.targets}
            for pos in positions:
                vs = [np.full(shapes[t], zero, dtype=object) for t in self.targets]
                basis = vs[j]
                if self.per_sample:
                    basis[(slice(None),) + pos] = mpmath.mpf(1)
                else:
                    basis[pos] = mpmath.mpf(1)
                for ti, hv in zip(self.targets, self._hvp(env, vs)):
                    columns[ti].append(hv)
            for ti in self.targets:
                if self.per_sample:
                    b = shapes[ti][0]
                    stacked = np.stack([c.reshape(b, -1) for c in columns[ti]], axis=-1)
                else:
                    stacked = np.stack([c for c in columns[ti]], axis=-1).reshape(shapes[ti] + shape_j)
                out[("hess", ti, tj)] = stacked
        return out


# ---------------------------------------------------------------------------------------------
# References: values, cross-check, sensitivities
# ---------------------------------------------------------------------------------------------

@dataclass
class Reference:
    name: str
    dtype: str
    values: dict                     # quantity -> float64 array (+-inf beyond float64, nan undefined)
    exact: dict                      # quantity -> mpf object array
    sensitivity: dict                # quantity -> float64 array, s = sum |x_i dQ/dx_i|
    unit_of: dict                    # quantity -> int array: the unit each entry belongs to
    digits: np.ndarray               # digits used per unit
    unresolved: list                 # (quantity, entry, naive, stable) where the cross-check failed
    rescued: int = 0                 # entries that needed the 2D + 50 retry


def _mp_array(x) -> np.ndarray:
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=object)
    flat = out.reshape(-1)
    for i, v in enumerate(x.reshape(-1).tolist()):
        flat[i] = mpmath.mpf(v)
    return out


def _to_float(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=object)
    out = np.empty(a.shape, dtype=np.float64)
    flat = out.reshape(-1)
    for i, v in enumerate(a.reshape(-1).tolist()):
        if isinstance(v, mpmath.mpc):
            v = v.real if v.imag == 0 else mpmath.nan
        if mpmath.isnan(v):
            flat[i] = math.nan
        elif mpmath.isinf(v) or abs(v) > HUGE["float64"]:
            flat[i] = math.copysign(math.inf, float(mpmath.sign(v)))
        else:
            flat[i] = float(v)
    return out


def _agree(a, b, dtype: str) -> bool:
    if mpmath.isnan(a) or mpmath.isnan(b):
        return False
    if mpmath.isinf(a) or mpmath.isinf(b):
        return a == b
    big = max(abs(a), abs(b))
    return big <= NEGLIGIBLE[dtype] or abs(a - b) <= AGREE * big


def _unit_index(c: Case, key, shape, n_units: int) -> np.ndarray:
    if c.batch_coupled:
        return np.zeros(shape, dtype=int)
    lead = np.arange(n_units).reshape((-1,) + (1,) * (len(shape) - 1))
    return np.broadcast_to(lead, shape).copy()


def _subset(data: dict, index: np.ndarray, c: Case) -> dict:
    if c.batch_coupled:
        return dict(data)
    return {k: v[index] for k, v in data.items()}


def _largest(c: Case, data: dict, n_units: int) -> np.ndarray:
    """max |x| over each unit's continuous inputs."""
    big = np.zeros(n_units)
    for arg in c.continuous:
        x = np.abs(np.asarray(data[arg], dtype=np.float64))
        per = x.reshape(len(x), -1).max(axis=1) if not c.batch_coupled else np.array([x.max()])
        big = np.maximum(big, per)
    return big


def _digits(c: Case, data: dict, n_units: int) -> np.ndarray:
    if not c.exponential:
        return np.full(n_units, BASE_DIGITS)
    span = np.minimum(2 * _largest(c, data, n_units), MAX_EXPONENT_SPAN)
    return BASE_DIGITS + np.ceil(span / math.log(10)).astype(int)


def _retry_digits(level: int, digits: np.ndarray, big: np.ndarray, dtype: str) -> np.ndarray:
    """Precision for a unit whose two evaluations disagreed: 2 D + 50 digits (at least enough to put
    rounding residues below NEGLIGIBLE), then enough for exp(-max|x|), then for exp(-2 max|x|),
    against 1 (a log after a cancellation needs them all)."""
    if level == 0:
        floor = 80 + int(math.ceil(-mpmath.log10(NEGLIGIBLE[dtype])))
        return np.maximum(2 * digits + 50, floor)
    factor = 1.0 if level == 1 else 2.0
    return np.maximum(digits, BASE_DIGITS + 60 + np.ceil(factor * big / math.log(10)).astype(int))


def _evaluate_units(evaluator: ProgramEvaluator, c: Case, data_mp: dict, directions: dict,
                    digits: np.ndarray, only: np.ndarray | None = None, shift=None) -> dict:
    """quantities() by groups of units of equal precision, reassembled. `shift(values, digits)` may
    perturb the inputs first (inside the working precision)."""
    n_units = len(digits)
    chosen = np.arange(n_units) if only is None else only
    results: dict = {}
    for d in sorted(set(digits[chosen].tolist())):
        index = chosen[digits[chosen] == d]
        with mpmath.workdps(int(d)):
            values = _subset(data_mp, index, c)
            dirs = _subset(directions, index, c) if not c.batch_coupled else directions
            if shift is not None:
                values = shift(values)
            q = evaluator.quantities(values, dirs)
        for key, arr in q.items():
            if key not in results:
                shape = arr.shape if c.batch_coupled else (n_units,) + arr.shape[1:]
                results[key] = np.empty(shape, dtype=object)
            if c.batch_coupled:
                results[key][...] = arr
            else:
                results[key][index] = arr
    return results


@functools.lru_cache(maxsize=None)
def reference(name: str, dtype: str) -> Reference:
    c = case(name)
    data = inputs(name, dtype)
    n_units = units(name, dtype)
    data_mp = {a: (data[a] if c.domains[a] == "index" else _mp_array(np.asarray(data[a], np.float64)))
               for a in c.arguments}
    directions = {t: _mp_array(hvp_direction(np.shape(data[t]), k)) for k, t in enumerate(c.targets)}
    naive = ProgramEvaluator(c.naive)
    stable = ProgramEvaluator(c.stable)
    digits = _digits(c, data, n_units)
    exact = _evaluate_units(naive, c, data_mp, directions, digits)
    check = _evaluate_units(stable, c, data_mp, directions, digits)
    unit_of = {k: _unit_index(c, k, v.shape, n_units) for k, v in exact.items()}

    def disagreeing(a, b):
        bad = set()
        for key in a:
            for pos in np.ndindex(a[key].shape):
                if not _agree(a[key][pos], b[key][pos], dtype):
                    bad.add(int(unit_of[key][pos]))
        return np.array(sorted(bad), dtype=int)

    bad = disagreeing(exact, check)
    unresolved, rescued = [], 0
    big = _largest(c, data, n_units)
    for level in range(3):
        if not bad.size:
            break
        retry = digits.copy()
        retry[bad] = _retry_digits(level, digits[bad], big[bad], dtype)
        again = _evaluate_units(naive, c, data_mp, directions, retry, only=bad)
        again_check = _evaluate_units(stable, c, data_mp, directions, retry, only=bad)
        still = set()
        for key in exact:
            for pos in np.ndindex(exact[key].shape):
                unit = int(unit_of[key][pos])
                if unit in set(bad.tolist()):
                    exact[key][pos] = again[key][pos]
                    if not _agree(again[key][pos], again_check[key][pos], dtype):
                        still.add(unit)
        rescued += len(set(bad.tolist()) - still)
        digits = retry
        bad = np.array(sorted(still), dtype=int)
    for key in exact:
        for pos in np.ndindex(exact[key].shape):
            if int(unit_of[key][pos]) in set(bad.tolist()):
                unresolved.append((key, pos, exact[key][pos], check[key][pos]))
    # sensitivities: perturb one continuous input entry (per unit) at a time by one unit roundoff
    u = mpmath.mpf(UNIT_ROUNDOFF[dtype])
    sens = {k: np.zeros(v.shape, dtype=object) for k, v in exact.items()}
    for arg in c.continuous:
        x = np.asarray(data[arg])
        positions = [()] if c.elementwise else (list(np.ndindex(x.shape)) if c.batch_coupled
                                                 else list(np.ndindex(x.shape[1:])))
        for pos in positions:
            changes = []
            for sign in (1, -1):
                def shift(values, sign=sign, pos=pos, arg=arg):
                    moved = dict(values)
                    base = values[arg]
                    new = np.array(base, dtype=object)
                    if c.elementwise:
                        new = base * (1 + sign * u)
                    elif c.batch_coupled:
                        new[pos] = base[pos] * (1 + sign * u)
                    else:
                        new[(slice(None),) + pos] = base[(slice(None),) + pos] * (1 + sign * u)
                    moved[arg] = new
                    return moved
                changes.append(_evaluate_units(naive, c, data_mp, directions, digits, shift=shift))
            for key in sens:
                sens[key] = sens[key] + np.abs(changes[0][key] - changes[1][key]) / (2 * u)
    return Reference(name, dtype, {k: _to_float(v) for k, v in exact.items()}, exact,
                     {k: _to_float(v) for k, v in sens.items()}, unit_of, digits, unresolved, rescued)


# ---------------------------------------------------------------------------------------------
# The emitted code
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def module(name: str, backend: str, rewrites: bool = True):
    c = case(name)
    return (c.stable if rewrites else c.naive).build(backend)


class Framework:
    def __init__(self, backend: str):
        self.backend = backend
        if backend == "torch":
            import torch
            self.lib = torch
        elif backend == "tensorflow":
            import tensorflow as tf
            self.lib = tf
        elif backend == "jax":
            import jax
            self.lib = jax
        else:
            self.lib = np

    def precision(self):
        """JAX keeps float64 only in its x64 mode: a context for the calls (nothing for the others)."""
        if self.backend != "jax":
            return contextlib.nullcontext()
        enable = getattr(self.lib, "enable_x64", None)
        if enable is None:  # jax < 0.6
            from jax.experimental import enable_x64 as enable
        return enable(True)

    def tensor(self, x: np.ndarray):
        if self.backend == "torch":
            return self.lib.from_numpy(np.ascontiguousarray(x))
        if self.backend == "tensorflow":
            return self.lib.constant(x)
        if self.backend == "jax":
            return self.lib.numpy.asarray(x)
        return x

    def numpy(self, x) -> np.ndarray:
        if self.backend == "torch":
            return x.detach().cpu().numpy()
        if self.backend == "tensorflow":
            return x.numpy()
        return np.asarray(x)


@functools.lru_cache(maxsize=None)
def framework(backend: str) -> Framework:
    return Framework(backend)


def _tuple(x, k):
    return tuple(x) if k > 1 else (x,)


def emitted(name: str, backend: str, dtype: str, rewrites: bool = True, subset: np.ndarray | None = None) -> dict:
    """Every quantity from the emitted module (float64 arrays of the dtype's values), keyed as the
    reference's. `subset` restricts the inputs to some units. Warnings are the caller's business."""
    c = case(name)
    fw = framework(backend)
    mod = module(name, backend, rewrites)
    data = inputs(name, dtype)
    if subset is not None:
        data = _subset(data, subset, c)
    with fw.precision():
        args = [fw.tensor(data[a]) for a in c.arguments]
        k = len(c.targets)
        dirs = [fw.tensor(hvp_direction(np.shape(data[t]), i).astype(dtype)) for i, t in enumerate(c.targets)]
        out = {("loss",): mod.loss(*args)}
        for t, g in zip(c.targets, _tuple(mod.grad(*args), k)):
            out[("grad", t)] = g
        for t, hv in zip(c.targets, _tuple(mod.hvp(*args, dirs[0] if k == 1 else tuple(dirs)), k)):
            out[("hvp", t)] = hv
        h = mod.hessian(*args)
        for i, ti in enumerate(c.targets):
            for j, tj in enumerate(c.targets):
                out[("hess", ti, tj)] = h if k == 1 else h[i][j]
    result = {}
    for key, value in out.items():
        arr = fw.numpy(value)
        assert arr.dtype == np.dtype(dtype), (name, backend, dtype, key, arr.dtype)
        result[key] = arr.astype(np.float64)
    return result


def warnings_by_unit(name: str, dtype: str, rewrites: bool = True) -> list[tuple[int, str]]:
    """The units whose inputs alone make the emitted NumPy code warn, with the messages."""
    found = []
    for unit in range(units(name, dtype)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            emitted(name, "numpy", dtype, rewrites, subset=None if case(name).batch_coupled else np.array([unit]))
        for w in caught:
            found.append((unit, f"{w.category.__name__}: {w.message}"))
    return found


# ---------------------------------------------------------------------------------------------
# The comparison
# ---------------------------------------------------------------------------------------------

@dataclass
class Finding:
    kind: str           # 'nonfinite' | 'inaccurate' | 'exempt-finite-mismatch'
    key: tuple
    entry: tuple
    unit: int
    emitted: float
    reference: float
    kappa: float
    error: float

    def describe(self, name: str, backend: str, dtype: str) -> str:
        q = "/".join(self.key)
        return (f"{name} [{backend}, {dtype}] {q}{list(self.entry)} at {unit_inputs(name, dtype, self.unit)}: "
                f"emitted {self.emitted!r}, reference {self.reference!r} ({self.kind}; relative error "
                f"{self.error:.3g}, kappa {self.kappa:.3g})")


@dataclass
class Comparison:
    findings: list
    counts: dict            # quantity kind -> nonfinite count where the reference is representable
    worst: dict             # quantity kind -> worst relative error (well-conditioned entries)
    worst_scaled: float     # worst error / allowed over all entries (<= 1 passes)
    checked: int
    ill_conditioned: int
    exempt: int
    exempt_units: set


def _kind(key) -> str:
    return {"loss": "loss", "grad": "grad", "hess": "hess", "hvp": "hvp"}[key[0]]


def compare(ref: Reference, got: dict, dtype: str) -> Comparison:
    rtol, tiny, huge = RTOL[dtype], TINY[dtype], HUGE[dtype]
    findings = []
    counts = {"loss": 0, "grad": 0, "hess": 0, "hvp": 0}
    worst = {"loss": 0.0, "grad": 0.0, "hess": 0.0, "hvp": 0.0}
    worst_scaled, checked, ill, exempt = 0.0, 0, 0, 0
    exempt_units = set()
    for key, r in ref.values.items():
        s = ref.sensitivity[key]
        unit = ref.unit_of[key]
        c = np.asarray(got[key]).reshape(r.shape)
        for pos in np.ndindex(r.shape):
            rv, cv, sv = float(r[pos]), float(c[pos]), float(s[pos])
            if math.isnan(rv):
                findings.append(Finding("undefined-reference", key, pos, int(unit[pos]), cv, rv, math.nan, math.nan))
                continue
            if not abs(rv) <= huge:
                exempt += 1
                exempt_units.add(int(unit[pos]))
                if math.isfinite(cv) and abs(cv) <= huge:
                    findings.append(Finding("exempt-but-finite", key, pos, int(unit[pos]), cv, rv, math.inf, math.inf))
                elif math.isnan(cv) or (math.isinf(cv) and math.copysign(1, cv) != math.copysign(1, rv)):
                    findings.append(Finding("exempt-wrong-sign", key, pos, int(unit[pos]), cv, rv, math.inf, math.inf))
                continue
            checked += 1
            kappa = sv / abs(rv) if rv != 0 else (math.inf if sv > 0 else 0.0)
            if not math.isfinite(cv):
                counts[_kind(key)] += 1
                findings.append(Finding("nonfinite", key, pos, int(unit[pos]), cv, rv, kappa, math.inf))
                continue
            err = abs(cv - rv)
            allowed = rtol * max(abs(rv), sv) + tiny
            rel = err / abs(rv) if rv != 0 else (0.0 if err == 0 else math.inf)
            well = rtol * kappa < 1
            if well:
                worst[_kind(key)] = max(worst[_kind(key)], rel if abs(rv) > tiny else 0.0)
            else:
                ill += 1
            worst_scaled = max(worst_scaled, err / allowed)
            if err > allowed:
                findings.append(Finding("inaccurate", key, pos, int(unit[pos]), cv, rv, kappa, rel))
    return Comparison(findings, counts, worst, worst_scaled, checked, ill, exempt, exempt_units)


# ---------------------------------------------------------------------------------------------
# Known instabilities of the emitted code (found by these tests; owners: stabilize, catalog, backends)
# ---------------------------------------------------------------------------------------------

def _row(values, key):
    return np.atleast_1d(np.asarray(values[key], dtype=np.float64))


def _param(name: str, parameter: str) -> float:
    return next(float(p.default) for p in case(name).stable.definition.parameters if p.name == parameter)


@dataclass(frozen=True)
class KnownIssue:
    """An instability the tests found and tolerate only within `bound` (an absolute error at the
    scale of the terms that cancel), so that a regression beyond it still fails."""

    id: str
    losses: tuple[str, ...]
    quantities: tuple[str, ...]            # 'loss', 'grad', 'hess', 'hvp'
    dtypes: tuple[str, ...]
    kind: str                              # the Finding kind it explains
    bound: object                          # (name, unit inputs, dtype) -> allowed |emitted - reference|
    summary: str
    fix: str

    def explains(self, finding: Finding, name: str, dtype: str) -> bool:
        if name not in self.losses or dtype not in self.dtypes or finding.key[0] not in self.quantities:
            return False
        if finding.kind != self.kind:
            return False
        x = unit_inputs(name, dtype, finding.unit)
        if self.kind == "nonfinite":
            return bool(self.bound(name, x, dtype, finding))
        return abs(finding.emitted - finding.reference) <= self.bound(name, x, dtype)


def _softmax_bound(name, x, dtype):
    z = _row(x, "z")
    y = 1.0 if case(name).domains["y"] == "index" else float(np.abs(_row(x, "y")).sum())
    return 16 * UNIT_ROUNDOFF[dtype] * max(1.0, float(np.abs(z).max())) * max(1.0, y)


def _triplet_bound(name, x, dtype):
    a, p, n = (_row(x, k) for k in ("anchor", "positive", "negative"))
    scale = float(((a - p) ** 2).sum() + ((a - n) ** 2).sum()) + _param(name, "margin")
    return 8 * UNIT_ROUNDOFF[dtype] * scale


KNOWN: tuple[KnownIssue, ...] = (
    KnownIssue(
        "softmax-dominant-class", ("softmax_ce", "softmax_ce_smooth", "sparse_softmax_ce"),
        ("loss", "grad", "hess", "hvp"), DTYPES, "inaccurate", _softmax_bound,
        "Quantities that vanish like exp(-gap) when one logit dominates its row (the loss of a confidently "
        "right sample, lse(z) - z_k; the gradient p_k - 1; the Hessian p_k (1 - p_k) and hvp terms) are "
        "differences of O(1) or O(|z|) numbers: absolute error ~u max|z|, relative error up to 1 (0 "
        "instead of 7.2e-18 at z = (0.5, -3, 40), y = e_3). The gradient p sum(y) - y with soft labels "
        "also carries the rounding of sum(y) (5e-10 relative at y = (1 - 1e-7, 1e-7, 0) in float64).",
        "With logsumexp already split into m = max(z) and L = log(sum(exp(z - m))), compute L as "
        "log1p(sum over j != argmax of exp(z_j - m)), so that the argmax's z_k - lse = -L keeps its relative "
        "accuracy (log(1 + 1e-304) rounds to 0, log1p does not), and print 1 - p_k as -expm1(z_k - m - L) "
        "(the backends' _logsumexp, and derive for 1 - p)."),
    KnownIssue(
        "poisson-grad-cancellation", ("poisson_nll",), ("grad",), DTYPES, "inaccurate",
        lambda name, x, dtype: 8 * UNIT_ROUNDOFF[dtype] * max(1.0, float(_row(x, "y").max())),
        "poisson_nll's gradient exp(r) - y cancels where exp(r) ~ y: at y = 1, r = 1e-9 it is 1.0000000827e-9 "
        "instead of 1.0000000005e-9 in float64 (8e-8 relative) and 0 in float32; y is an exact count, so "
        "the condition number is 1.",
        "Rewrite exp(u) - y -> expm1(u) - (y - 1) when y is a label (count/binary): y - 1 is exact."),
    KnownIssue(
        "gaussian_nll-float32-hvp-overflow", ("gaussian_nll",), ("hvp",), ("float32",), "nonfinite",
        lambda name, x, dtype, finding: abs(finding.reference) > 2.0 ** 127,
        "gaussian_nll's hvp for var overflows in float32 in a term (y - mu)^2 / var^3 = 4e38 although the "
        "sum is 3.0e38 < FLT_MAX (y = -3, mu = 17, var = 1e-12), with a RuntimeWarning from NumPy.",
        "Only at the very top of the float32 range; scaling by var (computing var^2 H v) would avoid it."),
)


def explain(finding: Finding, name: str, dtype: str) -> KnownIssue | None:
    return next((k for k in KNOWN if k.explains(finding, name, dtype)), None)


# ---------------------------------------------------------------------------------------------
# BCE on logits and softmax cross-entropy against PyTorch's own
# ---------------------------------------------------------------------------------------------

TORCH_PAIRS = {
    "bce_logits": "torch.nn.functional.binary_cross_entropy_with_logits",
    "softmax_ce": "torch.nn.functional.cross_entropy (probability targets)",
    "sparse_softmax_ce": "torch.nn.functional.cross_entropy (class indices)",
}


def torch_builtin(name: str, dtype: str) -> dict:
    """loss (per element/sample), grad and Hessian of PyTorch's built-in, by autograd, keyed as ours."""
    import torch
    import torch.nn.functional as F

    data = inputs(name, dtype)
    z = torch.from_numpy(np.ascontiguousarray(data["z"])).requires_grad_(True)
    y = torch.from_numpy(np.ascontiguousarray(data["y"]))

    def per(zz):
        if name == "bce_logits":
            return F.binary_cross_entropy_with_logits(zz, y, reduction="none")
        return F.cross_entropy(zz, y, reduction="none")

    values = per(z)
    (g,) = torch.autograd.grad(values.sum(), z, create_graph=True)
    if name == "bce_logits":
        (h,) = torch.autograd.grad(g.sum(), z)
    else:
        rows = []
        for c in range(z.shape[1]):
            (col,) = torch.autograd.grad(g[:, c].sum(), z, retain_graph=True)
            rows.append(col)
        h = torch.stack(rows, dim=1)   # h[b, c, k] = d g[b, c] / d z[b, k]
    out = {("loss",): values.detach().numpy(), ("grad", "z"): g.detach().numpy(), ("hess", "z", "z"): h.numpy()}
    return {k: v.astype(np.float64) for k, v in out.items()}


def relative_errors(ref: Reference, got: dict, key, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Relative error of each entry (absolute below the dtype's smallest normal), and whether the
    entry is well conditioned (rtol * kappa < 1)."""
    r = ref.values[key]
    s = ref.sensitivity[key]
    c = np.asarray(got[key], dtype=np.float64).reshape(r.shape)
    with np.errstate(all="ignore"):
        err = np.abs(c - r) / np.maximum(np.abs(r), TINY[dtype])
        err = np.where(np.isfinite(c), err, np.inf)
        well = RTOL[dtype] * s < np.abs(r)
    return err, well
