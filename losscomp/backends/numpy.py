"""The NumPy backend: SymPy's NumPyPrinter with the shared mixin; helpers for what NumPy lacks."""

from __future__ import annotations

from sympy.printing.numpy import NumPyPrinter

from .base import ArrayPrinterMixin, Backend


class NumPyLossPrinter(ArrayPrinterMixin, NumPyPrinter):
    ALIAS = "np"
    MODULE = "numpy"
    FUNCTIONS = {
        "exp": "{m}.exp({0})", "log": "{m}.log({0})", "log1p": "{m}.log1p({0})", "expm1": "{m}.expm1({0})",
        "sqrt": "{m}.sqrt({0})", "sin": "{m}.sin({0})", "cos": "{m}.cos({0})", "tanh": "{m}.tanh({0})",
        "sinh": "{m}.sinh({0})", "cosh": "{m}.cosh({0})", "abs": "{m}.abs({0})", "sign": "{m}.sign({0})",
        "maximum": "{m}.maximum({0}, {1})", "minimum": "{m}.minimum({0}, {1})",
        "relu": "{m}.maximum({0}, 0)", "clip": "{m}.minimum({m}.maximum({0}, {1}), {2})",
        "sigmoid": "_sigmoid({0})", "softplus": "_softplus({0})",
        "erf": "_erf({0})", "lgamma": "_lgamma({0})", "digamma": "_digamma({0})",
    }


HELPERS = {
    "_matvec": '''
def _matvec(X, w):
    return X @ w
''',
    "_weighted_gram": '''
def _weighted_gram(X, h):
    """X^T diag(h) X."""
    return X.T @ (h[:, None] * X)
''',
    "_sigmoid": '''
def _sigmoid(x):
    """1 / (1 + exp(-x)), without overflow for either sign of x."""
    t = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + t), t / (1 + t))
''',
    "_softplus": '''
def _softplus(x):
    """log(1 + exp(x)) = logaddexp(0, x), exact for large |x|."""
    return np.logaddexp(0, x)
''',
    "_erf": '''
def _erf(x):
    """Elementwise math.erf (NumPy has no erf)."""
    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[x.dtype if x.dtype.kind == "f" else np.float64])(x)
''',
    "_lgamma": '''
def _lgamma(x):
    """Elementwise math.lgamma (NumPy has no lgamma)."""
    x = np.asarray(x)
    return np.vectorize(math.lgamma, otypes=[x.dtype if x.dtype.kind == "f" else np.float64])(x)
''',
    "_digamma": '''
def _digamma(x):
    """psi(x) for x > 0: shift to x >= 6 by psi(x) = psi(x + 1) - 1/x, then the asymptotic series."""
    x = np.asarray(x, dtype=np.result_type(x, 1.0))
    shift = np.zeros_like(x)
    for _ in range(6):
        small = x < 6
        shift = shift - np.where(small, 1 / np.where(small, x, 1), 0)
        x = np.where(small, x + 1, x)
    r = 1 / (x * x)
    series = r * (1/12 - r * (1/120 - r * (1/252 - r * (1/240 - r * (1/132)))))
    return shift + np.log(x) - 1 / (2 * x) - series
''',
}

_COMMON = '''
def _shape(*inputs):
    return np.broadcast_shapes(*(np.shape(x) for x in inputs))


def _sum_to(d, shape):
    """Sum d over the axes that broadcasting added to an array of `shape`."""
    lead = d.ndim - len(shape)
    if lead:
        d = d.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and d.shape[i] != 1)
    return d.sum(axis=axes, keepdims=True) if axes else d
'''

_REDUCTIONS = {
    "mean": ('''
def _reduce(l, *inputs):
    """Mean over every element of the broadcast inputs."""
    return np.mean(np.broadcast_to(l, _shape(l, *inputs)))


def _to_target(d, target, *inputs):
    """d/d(target) of the mean: broadcast, divide by the element count, sum back to target's shape."""
    full = np.broadcast_to(np.asarray(d, dtype=target.dtype), _shape(*inputs))
    return _sum_to(full / max(full.size, 1), np.shape(target)).astype(target.dtype, copy=False)
'''),
    "sum": ('''
def _reduce(l, *inputs):
    """Sum over every element of the broadcast inputs."""
    return np.sum(np.broadcast_to(l, _shape(l, *inputs)))


def _to_target(d, target, *inputs):
    """d/d(target) of the sum: broadcast, then sum back to target's shape."""
    full = np.broadcast_to(np.asarray(d, dtype=target.dtype), _shape(*inputs))
    return _sum_to(full, np.shape(target)).astype(target.dtype, copy=False)
'''),
    "none": ('''
def _reduce(l, *inputs):
    """No reduction: the loss of every element, broadcast."""
    return np.broadcast_to(l, _shape(l, *inputs)).copy()


def _to_target(d, target, *inputs):
    """Derivatives of the sum of the elements, summed back to target's shape."""
    full = np.broadcast_to(np.asarray(d, dtype=target.dtype), _shape(*inputs))
    return _sum_to(full, np.shape(target)).astype(target.dtype, copy=False)
'''),
}


def _extras(spec) -> str:
    return ""


BACKEND = Backend(
    name="numpy",
    printer=NumPyLossPrinter,
    imports=("import numpy as np",),
    helpers=HELPERS,
    reductions={k: _COMMON + v for k, v in _REDUCTIONS.items()},
    extras=_extras,
    notes=("Plain NumPy functions; NumPy has no autodiff, so grad and hessian are the only derivatives.",),
)
