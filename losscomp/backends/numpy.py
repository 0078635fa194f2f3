"""The NumPy backend: SymPy's NumPyPrinter with the shared mixin; helpers for what NumPy lacks."""

from __future__ import annotations

from sympy.printing.numpy import NumPyPrinter

from .base import AXES_HELPER, ArrayPrinterMixin, Backend


class NumPyLossPrinter(ArrayPrinterMixin, NumPyPrinter):
    ALIAS = "np"
    MODULE = "numpy"
    FUNCTIONS = {
        **ArrayPrinterMixin.FUNCTIONS,
        "relu": "{m}.maximum({0}, 0)", "xlogy": "_xlogy({0}, {1})", "sigmoid": "_sigmoid({0})",
        "erf": "_erf({0})", "lgamma": "_lgamma({0})", "digamma": "_digamma({0})",  # NumPy has none of these
    }


HELPERS = {
    "_xlogy": '''
def _xlogy(x, y):
    """x log(y), and 0 where x = 0 (0 log 0 = 0); y is replaced by 1 there, so log never sees 0."""
    zero = x == 0
    return np.where(zero, 0, x * np.log(np.where(zero, 1, y)))
''',
    "_onehot": '''
def _onehot(y, scores):
    """Integer labels y, shape (...), as one-hot rows shaped like scores, (..., classes)."""
    return (np.asarray(y)[..., None] == np.arange(scores.shape[-1])).astype(scores.dtype)
''',
    "_hessian_blocks": '''
def _hessian_blocks(hvp, targets, per_sample):
    """Dense Hessian from products with basis vectors: (batch, d_i, d_j) blocks per sample, or the
    whole matrix, shaped target_i.shape + target_j.shape, when a reduction spans the batch."""
    k = len(targets)
    lead = [t.shape[:1] if per_sample else () for t in targets]
    sizes = [int(np.prod(t.shape[1:] if per_sample else t.shape)) for t in targets]
    columns = [[[] for _ in range(k)] for _ in range(k)]
    for j, t in enumerate(targets):
        for c in range(sizes[j]):
            basis = np.zeros(sizes[j], dtype=t.dtype)
            basis[c] = 1
            vs = [np.zeros_like(u) for u in targets]
            vs[j] = np.broadcast_to(basis.reshape((1,) + t.shape[1:] if per_sample else t.shape), t.shape).copy()
            products = hvp(tuple(vs))
            for i in range(k):
                columns[i][j].append(np.reshape(products[i], lead[i] + (sizes[i],)))
    blocks = [[np.stack(columns[i][j], axis=-1) for j in range(k)] for i in range(k)]
    if not per_sample:
        blocks = [[blocks[i][j].reshape(targets[i].shape + targets[j].shape) for j in range(k)] for i in range(k)]
    return tuple(tuple(row) for row in blocks)
''',
    "_matvec": '''
def _matvec(X, w):
    return X @ w
''',
    "_weighted_gram": '''
def _weighted_gram(X, h):
    """X^T diag(h) X for one output; for k outputs (h of shape (n, k)) the (d k, d k) block-diagonal
    Hessian in the row-major order of W (d, k). With h >= 0, (X sqrt h)^T (X sqrt h) is a symmetric product."""
    if h.ndim == 1:
        if np.all(h >= 0):
            Xs = X * np.sqrt(h)[:, None]
            return Xs.T @ Xs
        return X.T @ (h[:, None] * X)
    d, k = X.shape[1], h.shape[1]
    blocks = np.einsum("ia,ic,ib->cab", X, h, X, optimize=True)
    return np.einsum("cab,ce->acbe", blocks, np.eye(k, dtype=h.dtype)).reshape(d * k, d * k)
''',
    "_block_gram": '''
def _block_gram(X, blocks):
    """sum_i (x_i x_i^T) (x) H_i, the Hessian in W (d, k) of a per-sample loss of X @ W, as a (d k, d k)
    matrix in the row-major order of W; no Kronecker product is formed: one weighted Gram product
    X^T diag(H_i[c, j]) X (a matrix product) per pair c <= j."""
    d, k = X.shape[1], blocks.shape[1]
    out = np.empty((d, k, d, k), dtype=np.result_type(X, blocks))
    for c in range(k):
        for j in range(c, k):
            gram = (X * blocks[:, c, j][:, None]).T @ X
            out[:, c, :, j] = gram
            out[:, j, :, c] = gram.T
    return out.reshape(d * k, d * k)
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
def _shape(*arrays):
    return np.broadcast_shapes(*(np.shape(a) for a in arrays))


def _broadcast(x, *context):
    """x broadcast to the shape it takes among the context arrays."""
    return np.broadcast_to(x, _shape(x, *context))


''' + AXES_HELPER + '''

def _sum(x, axis):
    return np.sum(x, axis=_axes(np.ndim(x), axis), keepdims=True)


def _max(x, axis):
    """The shift of a logsumexp: the max over the axes (0 where it is not finite)."""
    axes = _axes(np.ndim(x), axis)
    m = np.max(x, axis=axes, keepdims=True) if axes else x
    return np.where(np.isfinite(m), m, 0)


def _logsumexp(x, axis):
    """log(sum(exp(x))) of an x already shifted by its max (x <= 0, its top entries 0), as log1p of the sum
    without one top term: no overflow, no log(0), and a dominant entry's tiny result keeps its digits."""
    axes = _axes(np.ndim(x), axis)
    if not axes:
        return x
    top = x == 0
    rest = np.sum(np.where(top, 0, np.exp(x)), axis=axes, keepdims=True)
    ties = np.sum(top, axis=axes, keepdims=True).astype(x.dtype) - 1
    return np.log1p(rest + ties)


def _count(axis, ref, *context):
    """How many elements a reduction over `axis` spans."""
    shape = _shape(*context)
    return np.asarray(np.prod([shape[a] for a in _axes(len(shape), axis)]), dtype=ref.dtype)


def _sum_to(d, shape):
    """Sum d over the axes that broadcasting added to an array of `shape`."""
    lead = d.ndim - len(shape)
    if lead:
        d = d.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and d.shape[i] != 1)
    return d.sum(axis=axes, keepdims=True) if axes else d


def _collect(d, like, *context):
    """The adjoint of broadcasting: d over the context's shape, summed down to like's shape."""
    full = np.broadcast_to(np.asarray(d, dtype=like.dtype), _shape(d, like, *context))
    return _sum_to(full, np.shape(like)).astype(like.dtype, copy=False)
'''

_REDUCTIONS = {
    "mean": '''
def _seed(ref, *context):
    """d loss / d l for each loss value: 1/N for a mean."""
    return np.asarray(1 / max(int(np.prod(_shape(*context))), 1), dtype=ref.dtype)


def _reduce(l):
    return np.mean(l)
''',
    "sum": '''
def _seed(ref, *context):
    """d loss / d l for each loss value: 1 for a sum."""
    return np.asarray(1, dtype=ref.dtype)


def _reduce(l):
    return np.sum(l)
''',
    "none": '''
def _seed(ref, *context):
    """Derivatives are those of the sum of the loss values."""
    return np.asarray(1, dtype=ref.dtype)


def _reduce(l):
    return np.array(l)


def _squeeze(l, axis):
    """The loss values as PyTorch's reduction='none' gives them: the axes a reduction kept dropped."""
    if axis == "sample":
        return np.reshape(l, np.shape(l)[:1])
    if axis == "all":
        return np.reshape(l, ())
    return np.squeeze(l, axis=axis)
''',
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
