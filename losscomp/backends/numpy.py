"""The NumPy backend: SymPy's NumPyPrinter with the shared mixin; helpers for what NumPy lacks."""

from __future__ import annotations

from sympy.printing.numpy import NumPyPrinter

from .base import AXES_HELPER, ArrayPrinterMixin, Backend


class NumPyLossPrinter(ArrayPrinterMixin, NumPyPrinter):
    ALIAS = "np"
    MODULE = "numpy"
    CALLS = {
        **ArrayPrinterMixin.CALLS,
        "relu": "$np.maximum({0}, 0)", "clip": "$np.clip({0}, {1}, {2})", "xlogy": "$_xlogy({0}, {1})",
        "sigmoid": "$_sigmoid({0})", "erf": "$_erf({0})", "lgamma": "$_lgamma({0})", "digamma": "$_digamma({0})",
        "polygamma": "$_polygamma({0}, {1})",  # NumPy has none of these
    }
    # out=_out(t): t's memory when t is an array (NumPy makes scalars of operations on 0-d arrays)
    CALLS_OUT = {
        **{name: "$np.%s({0}, out=$_out({o}))" % name for name in (
            "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sinh", "cosh", "abs", "sign")},
        "maximum": "$np.maximum({0}, {1}, out=$_out({o}))", "minimum": "$np.minimum({0}, {1}, out=$_out({o}))",
        "relu": "$np.maximum({0}, 0, out=$_out({o}))", "clip": "$np.clip({0}, {1}, {2}, out=$_out({o}))",
    }
    ARITH_OUT = {"add": "$np.add({0}, {1}, out=$_out({o}))", "sub": "$np.subtract({0}, {1}, out=$_out({o}))",
                 "mul": "$np.multiply({0}, {1}, out=$_out({o}))", "div": "$np.divide({0}, {1}, out=$_out({o}))",
                 "neg": "$np.negative({0}, out=$_out({o}))"}
    FILL_LIKE = "{0}.dtype.type({1})"   # a NumPy scalar of the reference's dtype


HELPERS = {
    "_out": '''
def _out(t):
    """t as the output of an operation that may overwrite it (a temporary no longer needed): its memory
    is reused; a NumPy scalar (from 0-d inputs) has none, and a new one is made."""
    return t if isinstance(t, np.ndarray) else None
''',
    "_floating": '''
def _floating(x):
    """x as an array of floats: integer and boolean inputs become float64, as NumPy's own mean makes them."""
    x = np.asarray(x)
    return x if x.dtype.kind in "fc" else x.astype(np.float64)
''',
    "_labels": '''
def _labels(y):
    """Class labels as integers (floats only when they hold whole numbers)."""
    y = np.asarray(y)
    if y.dtype.kind in "iub":
        return y
    if y.dtype.kind == "f" and np.all(np.floor(y) == y):
        return y.astype(np.int64)
    raise ValueError(f"class labels must be integers, not {y.dtype} values such as {y.flat[0]!r}")
''',
    "_per_sample": '''
def _per_sample(x, ndim):
    """One value per sample, shape (N,), aligned to the leading axis of the scores: (N, 1, ..., 1)."""
    return x.reshape(x.shape + (1,) * (ndim - 1))
''',
    "_check_shapes": '''
def _check_shapes(*arrays):
    """(name, array, role) triples. Arguments of the role 'element' have the scores' number of axes, or
    none: NumPy aligns arrays of different ranks on the right, and (N,) against (N, 1) is an outer
    product. 'sample' arrays are (N,), 'class' arrays (C,), 'index' labels the scores' shape without
    its last axis. Returns the number of axes of the scores."""
    scores = [(name, a) for name, a, role in arrays if role == "element" and np.ndim(a) > 0]
    if not scores:
        return 0
    rank = max(np.ndim(a) for _, a in scores)
    top, first = next((name, np.shape(a)) for name, a in scores if np.ndim(a) == rank)
    for name, a in scores:
        if np.ndim(a) != rank:
            raise ValueError(f"{name} has shape {np.shape(a)} and {top} has shape {first}: arguments broadcast "
                             f"against each other only with the same number of axes (else (N,) against (N, 1) "
                             f"is an (N, N) outer product); reshape {name} to {rank} axes, or declare it "
                             f"[sample] or [class] in the loss")
    try:
        shape = np.broadcast_shapes(*(np.shape(a) for _, a in scores))
    except ValueError:
        listed = ", ".join(f"{name} {np.shape(a)}" for name, a in scores)
        raise ValueError(f"the shapes {listed} do not broadcast against each other") from None
    for name, a, role in arrays:
        if role == "sample" and (np.ndim(a) != 1 or a.shape[0] not in (1, shape[0])):
            raise ValueError(f"{name} holds one value per sample: shape ({shape[0]},) beside {top} {first}, "
                             f"not {np.shape(a)}")
        if role == "class" and (np.ndim(a) != 1 or a.shape[0] not in (1, shape[-1])):
            raise ValueError(f"{name} holds one value per class: shape ({shape[-1]},) beside {top} {first}, "
                             f"not {np.shape(a)}")
        if role == "index" and (np.ndim(a) != rank - 1 or any(n not in (1, m) for n, m in zip(np.shape(a), shape))):
            raise ValueError(f"{name} holds class labels: shape {shape[:-1]} (the scores' shape without the "
                             f"class axis) beside {top} {first}, not {np.shape(a)}")
    return rank
''',
    "_validate": '''
def _validate(name, x, domain):
    """Raise a ValueError naming the first element of x outside its domain."""
    x = np.asarray(x)
    tests = {
        "positive": lambda v: v > 0, "nonnegative": lambda v: v >= 0, "unit": lambda v: (v > 0) & (v < 1),
        "binary": lambda v: (v == 0) | (v == 1), "sign": lambda v: (v == -1) | (v == 1),
        "count": lambda v: (v >= 0) & (np.floor(v) == v), "index": lambda v: (v >= 0) & (np.floor(v) == v),
        "onehot": lambda v: (v == 0) | (v == 1), "simplex": lambda v: v >= 0,
        "real": lambda v: np.isfinite(v),
    }
    good = np.isfinite(x) & tests[domain](x) if domain != "real" else np.isfinite(x)
    if domain in ("onehot", "simplex") and x.ndim > 1 and good.all():
        rows = np.sum(x, axis=tuple(range(1, x.ndim)))
        good = np.broadcast_to((np.abs(rows - 1) <= 1e-6 * x[0].size).reshape(rows.shape + (1,) * (x.ndim - 1)), x.shape)
    if not good.all():
        where = tuple(int(i) for i in np.argwhere(~good)[0])
        raise ValueError(f"{name}{list(where)} = {x[where]!r} is outside the domain {domain!r} of {name}")
''',
    "_numel": '''
def _numel(*arrays):
    """How many values the arrays make together when broadcast."""
    return int(np.prod(np.broadcast_shapes(*(np.shape(a) for a in arrays))))
''',
    "_xlogy": '''
def _xlogy(x, y):
    """x log(y), and 0 where x = 0 (0 log 0 = 0); y is replaced by 1 there, so log never sees 0."""
    zero = x == 0
    return np.where(zero, 0, x * np.log(np.where(zero, 1, y)))
''',
    "_onehot": '''
def _onehot(y, scores):
    """Integer labels y, shape (...), as one-hot rows shaped like scores, (..., classes)."""
    classes = scores.shape[-1]
    if y.size and (y.min() < 0 or y.max() >= classes):
        bad = y[(y < 0) | (y >= classes)].flat[0]
        raise ValueError(f"class label {bad} is outside [0, {classes}): the scores have {classes} classes")
    return (y[..., None] == np.arange(classes)).astype(scores.dtype)
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
    matrix in the row-major order of W, from one matrix product: X^T [x_i (x) H_i]."""
    n, d = X.shape
    k = blocks.shape[1]
    weighted = (X[:, :, None, None] * blocks[:, None, :, :]).reshape(n, d * k * k)
    return (X.T @ weighted).reshape(d, d, k, k).transpose(0, 2, 1, 3).reshape(d * k, d * k)
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
    "_polygamma": '''
def _polygamma(n, x):
    """The n-th derivative of digamma (n >= 1) for x > 0: shift to x >= 10 by
    psi_n(x) = psi_n(x + 1) - (-1)^n n! / x^(n+1), then the asymptotic series with Bernoulli numbers."""
    if n == 0:
        return _digamma(x)
    x = np.asarray(x, dtype=np.result_type(x, 1.0))
    sign = -1.0 if n % 2 == 0 else 1.0   # (-1)^(n+1)
    shift = np.zeros_like(x)
    for _ in range(10):
        small = x < 10
        shift = shift + np.where(small, math.factorial(n) / np.where(small, x, 1) ** (n + 1), 0)
        x = np.where(small, x + 1, x)
    series = math.factorial(n - 1) / x ** n + math.factorial(n) / (2 * x ** (n + 1))
    for k, b in ((1, 1/6), (2, -1/30), (3, 1/42), (4, -1/30), (5, 5/66), (6, -691/2730)):
        series = series + b * math.factorial(2 * k + n - 1) / math.factorial(2 * k) / x ** (2 * k + n)
    return sign * (series + shift)
''',
}

_COMMON = {
    "_shape": '''
def _shape(*arrays):
    return np.broadcast_shapes(*(np.shape(a) for a in arrays))
''',
    "_broadcast": '''
def _broadcast(x, ref, *context):
    """x broadcast to the shape it takes among the context arrays (a number takes ref's dtype)."""
    if not isinstance(x, np.ndarray):
        x = np.asarray(x, dtype=ref.dtype)
    shape = _shape(x, *context)
    return x if x.shape == shape else np.broadcast_to(x, shape)
''',
    "_axes": AXES_HELPER,
    "_sum": '''
def _sum(x, axis):
    return np.sum(x, axis=_axes(np.ndim(x), axis), keepdims=True)
''',
    "_max": '''
def _max(x, axis):
    """The shift of a logsumexp: the max over the axes (0 where it is not finite)."""
    axes = _axes(np.ndim(x), axis)
    m = np.max(x, axis=axes, keepdims=True) if axes else x
    return np.where(np.isfinite(m), m, 0)
''',
    "_logsumexp": '''
def _logsumexp(x, axis):
    """log(sum(exp(x))) of an x already shifted by its max (x <= 0, its top entries 0), as log1p of the sum
    without one top term: no overflow, no log(0), and a dominant entry's tiny result keeps its digits."""
    axes = _axes(np.ndim(x), axis)
    if not axes:
        return x
    top = x == 0
    rest = np.sum(np.exp(x, where=~top, out=np.zeros_like(x)), axis=axes, keepdims=True)
    ties = np.sum(top, axis=axes, keepdims=True, dtype=x.dtype) - 1
    return np.log1p(rest + ties)
''',
    "_count": '''
def _count(axis, ref, *context):
    """How many elements a reduction over `axis` spans."""
    shape = _shape(*context)
    return int(np.prod([shape[a] for a in _axes(len(shape), axis)]))
''',
    "_sum_to": '''
def _sum_to(d, shape):
    """Sum d over the axes that broadcasting added to an array of `shape`."""
    lead = d.ndim - len(shape)
    if lead:
        d = d.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and d.shape[i] != 1)
    return d.sum(axis=axes, keepdims=True) if axes else d
''',
    "_collect": '''
def _collect(d, like, *context):
    """The adjoint of broadcasting: d over the context's shape, summed down to like's shape (d itself when
    it has that shape already)."""
    full = _shape(d, like, *context)
    if isinstance(d, np.ndarray) and d.shape == full == like.shape:
        return d if d.dtype == like.dtype else d.astype(like.dtype)
    d = np.broadcast_to(np.asarray(d, dtype=like.dtype), full)
    return _sum_to(d, like.shape).astype(like.dtype, copy=True)
''',
    "_weights": '''
def _weights(sample_weight, shape):
    """Weights per sample (N,) or per loss value, aligned to the leading axes of the loss values."""
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "fc":
        w = w.astype(np.float64)
    if w.ndim > len(shape) or any(n not in (1, m) for n, m in zip(w.shape, shape)):
        raise ValueError(f"sample_weight of shape {w.shape} does not fit loss values of shape {tuple(shape)}")
    return w.reshape(w.shape + (1,) * (len(shape) - w.ndim))
''',
}

_REDUCTIONS = {
    "mean": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """d loss / d l for each loss value: 1/N for a mean, w / sum(w) for a weighted one."""
    if sample_weight is None:
        return ref.dtype.type(1 / max(_numel(*context), 1))
    shape = _shape(*context)
    w = _weights(sample_weight, shape)
    return w / np.sum(np.broadcast_to(w, shape))
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The mean of the loss values, or their weighted mean sum(w l) / sum(w)."""
    if sample_weight is None:
        return np.mean(l)
    w = np.broadcast_to(_weights(sample_weight, l.shape), l.shape)
    return np.sum(w * l) / np.sum(w)
''',
    },
    "sum": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """d loss / d l for each loss value: 1 for a sum, w for a weighted one."""
    return ref.dtype.type(1) if sample_weight is None else _weights(sample_weight, _shape(*context))
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The sum of the loss values, or sum(w l)."""
    return np.sum(l) if sample_weight is None else np.sum(_weights(sample_weight, l.shape) * l)
''',
    },
    "none": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """Derivatives are those of the sum of the (weighted) loss values."""
    return ref.dtype.type(1) if sample_weight is None else _weights(sample_weight, _shape(*context))
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The loss values (times their weights)."""
    return np.array(l) if sample_weight is None else _weights(sample_weight, l.shape) * l
''',
        "_squeeze": '''
def _squeeze(l, axis):
    """The loss values as PyTorch's reduction='none' gives them: the axes a reduction kept dropped."""
    if axis == "sample":
        return np.reshape(l, np.shape(l)[:1])
    if axis == "all":
        return np.reshape(l, ())
    return np.squeeze(l, axis=axis)
''',
    },
}

BACKEND = Backend(
    name="numpy",
    printer=NumPyLossPrinter,
    imports=(("numpy", "np"),),
    helpers={**HELPERS, **_COMMON},
    reductions=_REDUCTIONS,
    notes=("Plain NumPy functions; NumPy has no autodiff, so grad and hessian are the only derivatives.",),
    templates={"float": "_floating", "array": "np.asarray"},
)
