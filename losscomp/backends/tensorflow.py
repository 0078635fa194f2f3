"""The TensorFlow backend: SymPy's TensorflowPrinter with the shared mixin, plus a
`tf.custom_gradient` wrapper and a serializable `keras.losses.Loss` subclass."""

from __future__ import annotations

from . import sympy_printer_module
from .base import ArrayPrinterMixin, Backend

TensorflowPrinter = sympy_printer_module("tensorflow", "tensorflow").TensorflowPrinter


class TensorFlowLossPrinter(ArrayPrinterMixin, TensorflowPrinter):
    ALIAS = "tf"
    MODULE = "tensorflow"
    FILL_LIKE = "_as({1}, {0})"
    # In a graph, tf.where converts a Python number to float32 whatever its other operand is.
    SCALAR_BRANCH = "_as({1}, {0})"
    FUNCTIONS = {
        **ArrayPrinterMixin.FUNCTIONS,
        **{name: "{m}.math.%s({0})" % name for name in ("log", "log1p", "expm1", "erf", "lgamma", "digamma")},
        "relu": "{m}.nn.relu({0})", "xlogy": "{m}.math.xlogy({0}, {1})",
    }
    LOGICAL = {"And": "{m}.logical_and", "Or": "{m}.logical_or", "Not": "{m}.logical_not"}

    SETTINGS = {"tensorflow_version": "2.16"}  # printing never depends on the installed TensorFlow


HELPERS = {
    "_onehot": '''
def _onehot(y, scores):
    """Integer labels y, shape (...), as one-hot rows shaped like scores, (..., classes)."""
    return tf.one_hot(tf.cast(y, tf.int32), tf.shape(scores)[-1], dtype=scores.dtype)
''',
    "_hessian_blocks": '''
def _hessian_blocks(hvp, targets, per_sample):
    """Dense Hessian from products with basis vectors: (batch, d_i, d_j) blocks per sample, or the
    whole matrix, shaped target_i.shape + target_j.shape, when a reduction spans the batch."""
    k = len(targets)
    shapes = [list(t.shape) for t in targets]
    sizes = []
    for shape in shapes:
        n = 1
        for size in (shape[1:] if per_sample else shape):
            n *= size
        sizes.append(n)
    columns = [[[] for _ in range(k)] for _ in range(k)]
    for j, t in enumerate(targets):
        for c in range(sizes[j]):
            basis = tf.one_hot(c, sizes[j], dtype=t.dtype)
            vs = [tf.zeros_like(u) for u in targets]
            vs[j] = tf.broadcast_to(tf.reshape(basis, [1] + shapes[j][1:] if per_sample else shapes[j]), tf.shape(t))
            products = hvp(tuple(vs))
            for i in range(k):
                columns[i][j].append(tf.reshape(products[i], shapes[i][:1] + [sizes[i]] if per_sample else [sizes[i]]))
    blocks = [[tf.stack(columns[i][j], axis=-1) for j in range(k)] for i in range(k)]
    if not per_sample:
        blocks = [[tf.reshape(blocks[i][j], shapes[i] + shapes[j]) for j in range(k)] for i in range(k)]
    return tuple(tuple(row) for row in blocks)
''',
    "_softplus": '''
def _softplus(x):
    """log(1 + exp(x)) (tf.nn.softplus: stable for large |x|, and its autodiff is sigmoid)."""
    return tf.nn.softplus(x)
''',
    "_matvec": '''
def _matvec(X, w):
    return tf.linalg.matvec(X, w) if len(w.shape) == 1 else tf.linalg.matmul(X, w)
''',
    "_weighted_gram": '''
def _weighted_gram(X, h):
    """X^T diag(h) X for one output; for k outputs (h of shape (n, k)) the (d k, d k) block-diagonal
    Hessian in the row-major order of W (d, k)."""
    if len(h.shape) == 1:
        return tf.linalg.matmul(X, h[:, None] * X, transpose_a=True)
    d, k = X.shape[1], h.shape[1]
    blocks = tf.einsum("ia,ic,ib->cab", X, h, X)
    return tf.reshape(tf.einsum("cab,ce->acbe", blocks, tf.eye(k, dtype=h.dtype)), [d * k, d * k])
''',
    "_block_gram": '''
def _block_gram(X, blocks):
    """sum_i (x_i x_i^T) (x) H_i, the Hessian in W (d, k) of a per-sample loss of X @ W, as a (d k, d k)
    matrix in the row-major order of W; no Kronecker product is formed."""
    d, k = X.shape[1], blocks.shape[1]
    return tf.reshape(tf.einsum("ia,icj,ib->acbj", X, blocks, X), [d * k, d * k])
''',
}

_COMMON = '''
def _as(x, ref):
    """x as a tensor of ref's dtype; a Python number goes straight there (tf.cast would round it
    through float32 first)."""
    return tf.cast(x, ref.dtype) if tf.is_tensor(x) else tf.constant(x, dtype=ref.dtype)


def _shape(*arrays):
    shape = tf.shape(arrays[0])
    for a in arrays[1:]:
        shape = tf.broadcast_dynamic_shape(shape, tf.shape(a))
    return shape


def _broadcast(x, *context):
    """x broadcast to the shape it takes among the context tensors."""
    if context and not tf.is_tensor(x):
        x = _as(x, context[0])
    return tf.broadcast_to(x, _shape(x, *context))


def _axes(ndim, axis):
    """The axes a reduction spans: all but the batch axis ('sample'), every axis ('all'), or one."""
    if axis == "sample":
        return list(range(1, ndim))
    if axis == "all":
        return list(range(ndim))
    return [ndim + axis]


def _sum(x, axis):
    axes = _axes(len(x.shape), axis)
    return tf.reduce_sum(x, axis=axes, keepdims=True) if axes else x


def _max(x, axis):
    """The shift of a logsumexp: the max over the axes (0 where it is not finite)."""
    axes = _axes(len(x.shape), axis)
    m = tf.reduce_max(x, axis=axes, keepdims=True) if axes else x
    return tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))


def _logsumexp(x, axis):
    """log(sum(exp(x))) of an x already shifted by its max (x <= 0, its top entries 0), as log1p of the sum
    without one top term: no overflow, no log(0), and a dominant entry's tiny result keeps its digits."""
    axes = _axes(len(x.shape), axis)
    if not axes:
        return x
    top = tf.equal(x, 0)
    rest = tf.reduce_sum(tf.where(top, tf.zeros_like(x), tf.exp(x)), axis=axes, keepdims=True)
    ties = tf.reduce_sum(tf.cast(top, x.dtype), axis=axes, keepdims=True) - 1
    return tf.math.log1p(rest + ties)


def _count(axis, ref, *context):
    """How many elements a reduction over `axis` spans, in ref's dtype."""
    rank = max(len(c.shape) for c in context)
    shape = _shape(*context)
    return tf.cast(tf.reduce_prod(tf.gather(shape, _axes(rank, axis))), ref.dtype)


def _sum_to(d, like):
    """Sum d over the axes that broadcasting added to like."""
    axes, _ = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(like), s1=tf.shape(d))
    return tf.reshape(tf.reduce_sum(d, axis=axes), tf.shape(like))


def _collect(d, like, *context):
    """The adjoint of broadcasting: d over the context's shape, summed down to like's shape."""
    d = _as(d, like)
    return _sum_to(tf.broadcast_to(d, _shape(d, like, *context)), like)
'''

_REDUCTIONS = {
    "mean": '''
def _seed(ref, *context):
    """d loss / d l for each loss value: 1/N for a mean."""
    return 1 / tf.cast(tf.maximum(tf.reduce_prod(_shape(*context)), 1), ref.dtype)


def _reduce(l):
    return tf.reduce_mean(l)
''',
    "sum": '''
def _seed(ref, *context):
    """d loss / d l for each loss value: 1 for a sum."""
    return tf.cast(1, ref.dtype)


def _reduce(l):
    return tf.reduce_sum(l)
''',
    "none": '''
def _seed(ref, *context):
    """Derivatives are those of the sum of the loss values."""
    return tf.cast(1, ref.dtype)


def _reduce(l):
    return tf.identity(l)


def _squeeze(l, axis):
    """The loss values as PyTorch's reduction='none' gives them: the axes a reduction kept dropped."""
    if axis == "sample":
        return tf.reshape(l, tf.shape(l)[:1])
    if axis == "all":
        return tf.reshape(l, [])
    return tf.squeeze(l, axis=axis)
''',
}


def _extras(spec) -> str:
    args = ", ".join(spec.arguments)
    targets = ", ".join(spec.targets)
    params = [n for n, _ in spec.parameters]
    kw = "".join(f", {n}={n}" for n in params)
    grads = "(upstream * grads,)" if len(spec.targets) == 1 else "tuple(upstream * g for g in grads)"
    text = f'''
def loss_with_gradient({args}{spec.keyword_params}):
    """loss() whose gradient (by the targets {targets}) is the symbolic grad(), via tf.custom_gradient."""

    @tf.custom_gradient
    def _loss({targets}):
        def backward(upstream):
            grads = grad({args}{kw})
            return {grads}
        return loss({args}{kw}), backward

    return _loss({targets})
'''
    if len(spec.arguments) == 2 and spec.targets == (spec.arguments[1],):
        y_true, y_pred = spec.arguments
        per_sample = {"mean": "tf.reduce_mean", "sum": "tf.reduce_sum", "none": "tf.reduce_mean"}[spec.reduction]
        keras_reduction = {"mean": "sum_over_batch_size", "sum": "sum", "none": "none"}[spec.reduction]
        config = "".join(f", {n!r}: self.{n}" for n in params)
        init = "".join(f"{n}={v!r}, " for n, v in spec.parameters)
        assign = "".join(f"\n        self.{n} = {n}" for n in params)
        call_kw = "".join(f", {n}=self.{n}" for n in params)
        text += f'''

@tf.keras.utils.register_keras_serializable(package="losscomp")
class {spec.class_name}(tf.keras.losses.Loss):
    """Keras loss for model.compile(loss=...): per-sample {per_sample.split(".")[-1][7:]} of l over the
    non-batch axes, then Keras's reduction ({keras_reduction!r} by default)."""

    def __init__(self, {init}reduction={keras_reduction!r}, name={spec.name!r}, **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs){assign}

    def call(self, {y_true}, {y_pred}):
        {y_pred} = tf.convert_to_tensor({y_pred})
        {y_true} = tf.cast({y_true}, {y_pred}.dtype)
        l = values({y_true}, {y_pred}{call_kw})
        rank = len(l.shape)
        return {per_sample}(l, axis=list(range(1, rank))) if rank > 1 else l

    def get_config(self):
        return {{**super().get_config(){config}}}
'''
    return text


BACKEND = Backend(
    name="tensorflow",
    printer=TensorFlowLossPrinter,
    imports=("import tensorflow as tf",),
    helpers=HELPERS,
    reductions={k: _COMMON + v for k, v in _REDUCTIONS.items()},
    extras=_extras,
    notes=("TensorFlow: plain functions, loss_with_gradient (tf.custom_gradient) and a Keras Loss class.",),
)
