"""The JAX backend: SymPy's JaxPrinter with the shared mixin. Arrays are immutable (no `out=`), and
parameters become 0-d arrays of the inputs' dtype, as in the TensorFlow backend. Shapes are static
under `jax.jit`, so the shape helpers are plain Python over `.shape` tuples, as in NumPy; checks of
values (`validate=True`, the class-label range of `onehot`) run only on concrete arrays.

Every emitted function works under `jax.jit`, `jax.vmap` and `jax.grad`. float64 needs JAX's x64
mode (`jax.config.update("jax_enable_x64", True)`); without it JAX makes every array float32.
"""

from __future__ import annotations

from . import sympy_printer_module
from .base import AXES_HELPER, ArrayPrinterMixin, Backend

JaxPrinter = sympy_printer_module("numpy", "jax").JaxPrinter   # sympy.printing.numpy never imports jax


class JaxLossPrinter(ArrayPrinterMixin, JaxPrinter):
    ALIAS = "jnp"
    MODULE = "jax.numpy"
    TENSOR_SCALARS = True
    CALLS = {
        **ArrayPrinterMixin.CALLS,
        # jax.nn.relu's derivative at 0 is 0 (jnp.maximum would split it 1/2, 1/2)
        "relu": "$jax.nn.relu({0})", "clip": "$jnp.clip({0}, {1}, {2})",
        "sigmoid": "$jax.nn.sigmoid({0})",
        # logaddexp(x, 0) = max(x, 0) + log1p(exp(-|x|)): exact for large |x| of either sign
        "softplus": "$jnp.logaddexp({0}, 0)",
        "xlogy": "$jax.scipy.special.xlogy({0}, {1})", "erf": "$jax.scipy.special.erf({0})",
        "lgamma": "$jax.scipy.special.gammaln({0})", "digamma": "$jax.scipy.special.digamma({0})",
        "polygamma": "$jax.scipy.special.polygamma({0}, {1})",
    }


HELPERS = {
    "_floating": '''
def _floating(x):
    """x as a floating array: integer and boolean inputs take JAX's default float dtype (float32, or
    float64 in x64 mode)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.result_type(float))
''',
    "_labels": '''
def _labels(y):
    """Class labels as integers (floats only when they hold whole numbers; traced floats are cast unchecked)."""
    y = jnp.asarray(y)
    if jnp.issubdtype(y.dtype, jnp.integer):
        return y
    if not isinstance(y, jax.core.Tracer) and y.size:
        with jax.ensure_compile_time_eval():   # concrete labels are checked, even while jax.jit traces
            if not bool(jnp.all(jnp.floor(y) == y)):
                raise ValueError(f"class labels must be integers, not {y.dtype} values such as {y.reshape(-1)[0]!r}")
    return y.astype(jnp.result_type(int))
''',
    "_scalar": '''
def _scalar(x, ref):
    """A parameter as a 0-d array of ref's dtype (a traced parameter stays differentiable)."""
    return jnp.asarray(x, dtype=ref.dtype)
''',
    "_per_sample": '''
def _per_sample(x, ndim):
    """One value per sample, shape (N,), aligned to the leading axis of the scores: (N, 1, ..., 1)."""
    return jnp.reshape(x, x.shape + (1,) * (ndim - 1))
''',
    "_check_shapes": '''
def _check_shapes(*arrays):
    """(name, array, role) triples. Arguments of the role 'element' have the scores' number of axes, or
    none: broadcasting aligns arrays of different ranks on the right, and (N,) against (N, 1) is an
    outer product. 'sample' arrays are (N,), 'class' arrays (C,), 'index' labels the scores' shape
    without its last axis. Shapes are static under jax.jit, so this runs while tracing. Returns the
    number of axes of the scores."""
    scores = [(name, a) for name, a, role in arrays if role == "element" and a.ndim > 0]
    if not scores:
        return 0
    rank = max(a.ndim for _, a in scores)
    top, first = next((name, a.shape) for name, a in scores if a.ndim == rank)
    for name, a in scores:
        if a.ndim != rank:
            raise ValueError(f"{name} has shape {a.shape} and {top} has shape {first}: arguments broadcast "
                             f"against each other only with the same number of axes (else (N,) against (N, 1) "
                             f"is an (N, N) outer product); reshape {name} to {rank} axes, or declare it "
                             f"[sample] or [class] in the loss")
    try:
        shape = jnp.broadcast_shapes(*(a.shape for _, a in scores))
    except ValueError:
        listed = ", ".join(f"{name} {a.shape}" for name, a in scores)
        raise ValueError(f"the shapes {listed} do not broadcast against each other") from None
    for name, a, role in arrays:
        if role == "sample" and (a.ndim != 1 or a.shape[0] not in (1, shape[0])):
            raise ValueError(f"{name} holds one value per sample: shape ({shape[0]},) beside {top} {first}, "
                             f"not {a.shape}")
        if role == "class" and (a.ndim != 1 or a.shape[0] not in (1, shape[-1])):
            raise ValueError(f"{name} holds one value per class: shape ({shape[-1]},) beside {top} {first}, "
                             f"not {a.shape}")
        if role == "index" and (a.ndim != rank - 1 or any(n not in (1, m) for n, m in zip(a.shape, shape))):
            raise ValueError(f"{name} holds class labels: shape {shape[:-1]} (the scores' shape without the "
                             f"class axis) beside {top} {first}, not {a.shape}")
    return rank
''',
    "_validate": '''
def _validate(name, x, domain):
    """Raise a ValueError naming the first element of x outside its domain. Values are only known on
    concrete arrays: a traced argument (of jax.jit, jax.vmap) with validate=True is an error."""
    with jax.ensure_compile_time_eval():   # a concrete array is checked, even while jax.jit traces
        _check_domain(name, x, domain)
''',
    "_check_domain": '''
def _check_domain(name, x, domain):
    """_validate's check, on a concrete array."""
    if isinstance(x, jax.core.Tracer):
        raise ValueError(f"validate=True checks the values of {name}, which are not known while JAX traces "
                         f"(jax.jit, jax.vmap, ...): validate outside the transformed function")
    tests = {
        "positive": lambda v: v > 0, "nonnegative": lambda v: v >= 0, "unit": lambda v: (v > 0) & (v < 1),
        "binary": lambda v: (v == 0) | (v == 1), "sign": lambda v: (v == -1) | (v == 1),
        "count": lambda v: (v >= 0) & (jnp.floor(v) == v), "index": lambda v: (v >= 0) & (jnp.floor(v) == v),
        "onehot": lambda v: (v == 0) | (v == 1), "simplex": lambda v: v >= 0,
        "real": lambda v: jnp.isfinite(v),
    }
    good = jnp.isfinite(x) & tests[domain](x)
    if domain in ("onehot", "simplex") and x.ndim > 1 and bool(good.all()):
        rows = jnp.sum(x, axis=tuple(range(1, x.ndim)), keepdims=True)
        good = jnp.broadcast_to(jnp.abs(rows - 1) <= 1e-6 * x[0].size, x.shape)
    if not bool(good.all()):
        where = [int(i) for i in jnp.argwhere(~good)[0]]
        raise ValueError(f"{name}{where} = {x[tuple(where)].item()!r} is outside the domain {domain!r} of {name}")
''',
    "_numel": '''
def _numel(*arrays):
    """How many values the arrays make together when broadcast (static under jax.jit)."""
    return math.prod(_shape(*arrays))
''',
    "_onehot": '''
def _onehot(y, scores):
    """Integer labels y, shape (...), as one-hot rows shaped like scores, (..., classes). Concrete labels
    outside [0, classes) are a ValueError; traced labels (under jax.jit, jax.vmap) cannot be checked:
    one outside the range gives a row of zeros, as jax.nn.one_hot does (a sample without a class)."""
    classes = scores.shape[-1]
    if not isinstance(y, jax.core.Tracer) and y.size:
        with jax.ensure_compile_time_eval():   # concrete labels are checked, even while jax.jit traces
            if bool((y.min() < 0) | (y.max() >= classes)):
                bad = y[(y < 0) | (y >= classes)].reshape(-1)[0].item()
                raise ValueError(f"class label {bad} is outside [0, {classes}): the scores have {classes} classes")
    return jax.nn.one_hot(y, classes, dtype=scores.dtype)
''',
    "_hessian_blocks": '''
def _hessian_blocks(hvp, targets, per_sample):
    """Dense Hessian from products with basis vectors, all at once by jax.vmap: (batch, d_i, d_j) blocks
    per sample, or the whole matrix, shaped target_i.shape + target_j.shape, when a reduction spans the
    batch."""
    k = len(targets)
    lead = [t.shape[:1] if per_sample else () for t in targets]
    sizes = [math.prod(t.shape[1:] if per_sample else t.shape) for t in targets]
    blocks = [[None] * k for _ in range(k)]
    for j, t in enumerate(targets):
        basis = jnp.eye(sizes[j], dtype=t.dtype).reshape((sizes[j],) + ((1,) + t.shape[1:] if per_sample else t.shape))
        basis = jnp.broadcast_to(basis, (sizes[j],) + t.shape)

        def product(v, j=j):
            vs = tuple(v if i == j else jnp.zeros_like(u) for i, u in enumerate(targets))
            return hvp(vs)

        products = jax.vmap(product)(basis)
        for i in range(k):
            columns = jnp.reshape(products[i], (sizes[j],) + lead[i] + (sizes[i],))
            blocks[i][j] = jnp.moveaxis(columns, 0, -1)
    if not per_sample:
        blocks = [[jnp.reshape(blocks[i][j], targets[i].shape + targets[j].shape) for j in range(k)]
                  for i in range(k)]
    return tuple(tuple(row) for row in blocks)
''',
    "_matvec": '''
def _matvec(X, w):
    return X @ w
''',
    "_weighted_gram": '''
def _weighted_gram(X, h):
    """X^T diag(h) X for one output; for k outputs (h of shape (n, k)) the (d k, d k) block-diagonal
    Hessian in the row-major order of W (d, k)."""
    if h.ndim == 1:
        return X.T @ (h[:, None] * X)
    d, k = X.shape[1], h.shape[1]
    blocks = jnp.einsum("ia,ic,ib->cab", X, h, X)
    return jnp.einsum("cab,ce->acbe", blocks, jnp.eye(k, dtype=h.dtype)).reshape(d * k, d * k)
''',
    "_block_gram": '''
def _block_gram(X, blocks):
    """sum_i (x_i x_i^T) (x) H_i, the Hessian in W (d, k) of a per-sample loss of X @ W, as a (d k, d k)
    matrix in the row-major order of W; no Kronecker product is formed."""
    d, k = X.shape[1], blocks.shape[1]
    return jnp.einsum("ia,icj,ib->acbj", X, blocks, X).reshape(d * k, d * k)
''',
}

_COMMON = {
    "_shape": '''
def _shape(*arrays):
    return jnp.broadcast_shapes(*(jnp.shape(a) for a in arrays))
''',
    "_broadcast": '''
def _broadcast(x, ref, *context):
    """x broadcast to the shape it takes among the context arrays (a number takes ref's dtype)."""
    x = jnp.asarray(x, dtype=ref.dtype) if not isinstance(x, jax.Array) else x
    shape = _shape(x, *context)
    return x if x.shape == shape else jnp.broadcast_to(x, shape)
''',
    "_axes": AXES_HELPER,
    "_sum": '''
def _sum(x, axis):
    axes = _axes(x.ndim, axis)
    return jnp.sum(x, axis=axes, keepdims=True) if axes else x
''',
    "_max": '''
def _max(x, axis):
    """The shift of a logsumexp: the max over the axes (0 where it is not finite)."""
    axes = _axes(x.ndim, axis)
    m = jnp.max(x, axis=axes, keepdims=True) if axes else x
    return jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
''',
    "_logsumexp": '''
def _logsumexp(x, axis):
    """log(sum(exp(x))) of an x already shifted by its max (x <= 0, its top entries 0), as log1p of the sum
    without one top term: no overflow, no log(0), and a dominant entry's tiny result keeps its digits."""
    axes = _axes(x.ndim, axis)
    if not axes:
        return x
    top = x == 0
    rest = jnp.sum(jnp.where(top, jnp.zeros_like(x), jnp.exp(x)), axis=axes, keepdims=True)
    ties = jnp.sum(top, axis=axes, keepdims=True, dtype=x.dtype) - 1
    return jnp.log1p(rest + ties)
''',
    "_count": '''
def _count(axis, ref, *context):
    """How many elements a reduction over `axis` spans, as a 0-d array of ref's dtype."""
    shape = _shape(*context)
    return jnp.asarray(math.prod(shape[a] for a in _axes(len(shape), axis)), dtype=ref.dtype)
''',
    "_sum_to": '''
def _sum_to(d, shape):
    """Sum d over the axes that broadcasting added to an array of `shape`."""
    lead = d.ndim - len(shape)
    if lead:
        d = jnp.sum(d, axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and d.shape[i] != 1)
    return jnp.sum(d, axis=axes, keepdims=True) if axes else d
''',
    "_collect": '''
def _collect(d, like, *context):
    """The adjoint of broadcasting: d over the context's shape, summed down to like's shape (d itself when
    it has that shape already)."""
    d = jnp.asarray(d, dtype=like.dtype)
    full = _shape(d, like, *context)
    if d.shape == full == like.shape:
        return d
    return _sum_to(jnp.broadcast_to(d, full), like.shape)
''',
    "_weights": '''
def _weights(sample_weight, shape):
    """Weights per sample (N,) or per loss value, aligned to the leading axes of the loss values."""
    w = jnp.asarray(sample_weight)
    if not jnp.issubdtype(w.dtype, jnp.inexact):
        w = w.astype(jnp.result_type(float))
    if w.ndim > len(shape) or any(n not in (1, m) for n, m in zip(w.shape, shape)):
        raise ValueError(f"sample_weight of shape {w.shape} does not fit loss values of shape {tuple(shape)}")
    return jnp.reshape(w, w.shape + (1,) * (len(shape) - w.ndim))
''',
}

_REDUCTIONS = {
    "mean": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """d loss / d l for each loss value: 1/N for a mean, w / sum(w) for a weighted one."""
    if sample_weight is None:
        return jnp.asarray(1 / max(_numel(*context), 1), dtype=ref.dtype)
    shape = _shape(*context)
    w = _weights(sample_weight, shape).astype(ref.dtype)
    return w / jnp.sum(jnp.broadcast_to(w, shape))
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The mean of the loss values, or their weighted mean sum(w l) / sum(w)."""
    if sample_weight is None:
        return jnp.mean(l)
    w = jnp.broadcast_to(_weights(sample_weight, l.shape).astype(l.dtype), l.shape)
    return jnp.sum(w * l) / jnp.sum(w)
''',
    },
    "sum": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """d loss / d l for each loss value: 1 for a sum, w for a weighted one."""
    if sample_weight is None:
        return jnp.asarray(1, dtype=ref.dtype)
    return _weights(sample_weight, _shape(*context)).astype(ref.dtype)
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The sum of the loss values, or sum(w l)."""
    if sample_weight is None:
        return jnp.sum(l)
    return jnp.sum(_weights(sample_weight, l.shape).astype(l.dtype) * l)
''',
    },
    "none": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """Derivatives are those of the sum of the (weighted) loss values."""
    if sample_weight is None:
        return jnp.asarray(1, dtype=ref.dtype)
    return _weights(sample_weight, _shape(*context)).astype(ref.dtype)
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The loss values (times their weights)."""
    if sample_weight is None:
        return l
    return _weights(sample_weight, l.shape).astype(l.dtype) * l
''',
        "_squeeze": '''
def _squeeze(l, axis):
    """The loss values as PyTorch's reduction='none' gives them: the axes a reduction kept dropped."""
    if axis == "sample":
        return jnp.reshape(l, l.shape[:1])
    if axis == "all":
        return jnp.reshape(l, ())
    return jnp.squeeze(l, axis=axis)
''',
    },
}


def _extras(spec, ns) -> str:
    from .jax_objects import framework_objects

    return framework_objects(spec, ns)


BACKEND = Backend(
    name="jax",
    printer=JaxLossPrinter,
    imports=(("jax", "jax"), ("jax.numpy", "jnp")),
    helpers={**HELPERS, **_COMMON},
    reductions=_REDUCTIONS,
    extras=_extras,
    notes=("JAX: plain functions (they work under jax.jit, jax.vmap and jax.grad), loss_with_gradient "
           "(jax.custom_vjp: reverse mode uses grad(); no forward mode) and loss_with_jvp (jax.custom_jvp: forward "
           "and reverse mode use grad(), and a second derivative uses hvp()). float64 needs JAX's x64 mode "
           "(jax.config.update('jax_enable_x64', True)); without it JAX makes every array float32.",),
    inplace=False,
    tensor_scalars=True,
)
