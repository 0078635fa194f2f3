"""The TensorFlow backend: SymPy's TensorflowPrinter with the shared mixin. TensorFlow will not mix
dtypes, so every floating input is cast to the dtype of the (first) target, as Keras casts y_true to
y_pred's dtype, and parameters and constants become tensors of that dtype."""

from __future__ import annotations

from . import sympy_printer_module
from .base import ArrayPrinterMixin, Backend

TensorflowPrinter = sympy_printer_module("tensorflow", "tensorflow").TensorflowPrinter


class TensorFlowLossPrinter(ArrayPrinterMixin, TensorflowPrinter):
    ALIAS = "tf"
    MODULE = "tensorflow"
    TENSOR_SCALARS = True
    WHERE_TYPED = True   # tf.where converts a Python number to float32, whatever the other branch is
    FILL_LIKE = "$_as({1}, {0})"
    CALLS = {
        **ArrayPrinterMixin.CALLS,
        **{name: "$tf.math.%s({0})" % name for name in (
            "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sinh", "cosh", "abs", "sign",
            "sigmoid", "erf", "lgamma", "digamma")},
        "root": "$tf.math.sqrt({0})", "maximum": "$tf.maximum({0}, {1})", "minimum": "$tf.minimum({0}, {1})",
        "relu": "$tf.nn.relu({0})", "clip": "$tf.minimum($tf.maximum({0}, {1}), {2})",
        "xlogy": "$tf.math.xlogy({0}, {1})", "softplus": "$tf.nn.softplus({0})",
        "polygamma": "$tf.math.polygamma($_as({0}, {1}), {1})",
    }
    LOGICAL = {"and": "$tf.logical_and({0}, {1})", "or": "$tf.logical_or({0}, {1})", "not": "$tf.logical_not({0})"}
    SETTINGS = {"tensorflow_version": "2.16"}  # printing never depends on the installed TensorFlow

    def call(self, name, args, out):
        # the first operand of these must be a tensor: a number is made one of the reference's dtype
        if name in ("maximum", "minimum", "clip", "xlogy") and not self.is_tensor_operand(args[0]):
            if name in ("maximum", "minimum") and self.is_tensor_operand(args[1]):
                args = (args[1], args[0])
            else:
                args = (self.typed(args[0]), *args[1:])
        return super().call(name, args, out)


HELPERS = {
    "_as": '''
def _as(x, ref):
    """x as a tensor of ref's dtype; a Python number goes straight there (tf.cast would round it
    through float32 first)."""
    return tf.cast(x, ref.dtype) if tf.is_tensor(x) else tf.constant(x, dtype=ref.dtype)
''',
    "_floating": '''
def _floating(x, ref=None):
    """x as a floating tensor: of ref's dtype when given (as Keras casts y_true to y_pred's dtype), else
    integers and booleans as float32."""
    x = tf.convert_to_tensor(x)
    if ref is not None:
        return x if x.dtype == ref.dtype else tf.cast(x, ref.dtype)
    return x if x.dtype.is_floating or x.dtype.is_complex else tf.cast(x, tf.float32)
''',
    "_labels": '''
def _labels(y):
    """Class labels as an int32 tensor."""
    y = tf.convert_to_tensor(y)
    return y if y.dtype == tf.int32 else tf.cast(y, tf.int32)
''',
    "_scalar": '''
def _scalar(x, ref):
    """A parameter as a 0-d tensor of ref's dtype."""
    return _as(x, ref)
''',
    "_per_sample": '''
def _per_sample(x, ndim):
    """One value per sample, shape (N,), aligned to the leading axis of the scores: (N, 1, ..., 1)."""
    return tf.reshape(x, tf.concat([tf.shape(x), tf.ones([ndim - 1], tf.int32)], axis=0))
''',
    "_check_shapes": '''
def _check_shapes(*arrays):
    """(name, tensor, role) triples. Arguments of the role 'element' have the scores' number of axes, or
    none: broadcasting aligns tensors of different ranks on the right, and (N,) against (N, 1) is an
    outer product. 'sample' tensors are (N,), 'class' tensors (C,), 'index' labels the scores' shape
    without its last axis. Sizes unknown while tracing are not checked. Returns the scores' rank."""
    scores = [(name, a) for name, a, role in arrays if role == "element" and len(a.shape) > 0]
    if not scores:
        return 0
    rank = max(len(a.shape) for _, a in scores)
    top, first = next((name, tuple(a.shape)) for name, a in scores if len(a.shape) == rank)
    for name, a in scores:
        if len(a.shape) != rank:
            raise ValueError(f"{name} has shape {tuple(a.shape)} and {top} has shape {first}: arguments broadcast "
                             f"against each other only with the same number of axes (else (N,) against (N, 1) "
                             f"is an (N, N) outer product); reshape {name} to {rank} axes, or declare it "
                             f"[sample] or [class] in the loss")
    shape = list(first)
    for name, a in scores:
        for i, n in enumerate(a.shape):
            if n is not None and shape[i] is not None and n != 1 and shape[i] != 1 and n != shape[i]:
                listed = ", ".join(f"{name} {tuple(b.shape)}" for name, b in scores)
                raise ValueError(f"the shapes {listed} do not broadcast against each other")
            if shape[i] in (1, None):
                shape[i] = n if n != 1 or shape[i] is None else shape[i]

    def fits(n, m):
        return n is None or m is None or n in (1, m)

    for name, a, role in arrays:
        if role == "sample" and (len(a.shape) != 1 or not fits(a.shape[0], shape[0])):
            raise ValueError(f"{name} holds one value per sample: shape ({shape[0]},) beside {top} {first}, "
                             f"not {tuple(a.shape)}")
        if role == "class" and (len(a.shape) != 1 or not fits(a.shape[0], shape[-1])):
            raise ValueError(f"{name} holds one value per class: shape ({shape[-1]},) beside {top} {first}, "
                             f"not {tuple(a.shape)}")
        if role == "index" and (len(a.shape) != rank - 1 or not all(fits(n, m) for n, m in zip(a.shape, shape))):
            raise ValueError(f"{name} holds class labels: shape {tuple(shape[:-1])} (the scores' shape without "
                             f"the class axis) beside {top} {first}, not {tuple(a.shape)}")
    return rank
''',
    "_validate": '''
def _validate(name, x, domain):
    """Raise a ValueError naming the first element of x outside its domain (eager tensors only)."""
    v = tf.cast(x, tf.float64)
    tests = {
        "positive": lambda v: v > 0, "nonnegative": lambda v: v >= 0,
        "unit": lambda v: tf.logical_and(v > 0, v < 1),
        "binary": lambda v: tf.logical_or(tf.equal(v, 0), tf.equal(v, 1)),
        "sign": lambda v: tf.logical_or(tf.equal(v, -1), tf.equal(v, 1)),
        "count": lambda v: tf.logical_and(v >= 0, tf.equal(tf.floor(v), v)),
        "index": lambda v: tf.logical_and(v >= 0, tf.equal(tf.floor(v), v)),
        "onehot": lambda v: tf.logical_or(tf.equal(v, 0), tf.equal(v, 1)), "simplex": lambda v: v >= 0,
        "real": lambda v: tf.math.is_finite(v),
    }
    good = tf.logical_and(tf.math.is_finite(v), tests[domain](v))
    if domain in ("onehot", "simplex") and len(x.shape) > 1 and bool(tf.reduce_all(good)):
        rows = tf.reduce_sum(v, axis=list(range(1, len(x.shape))), keepdims=True)
        good = tf.broadcast_to(tf.abs(rows - 1) <= 1e-6 * tf.cast(tf.size(x[0]), tf.float64), tf.shape(x))
    if not bool(tf.reduce_all(good)):
        where = [int(i) for i in tf.where(tf.logical_not(good))[0]]
        raise ValueError(f"{name}{where} = {v[tuple(where)].numpy()!r} is outside the domain {domain!r} of {name}")
''',
    "_numel": '''
def _numel(*arrays):
    """How many values the tensors make together when broadcast (a tensor)."""
    return tf.reduce_prod(_shape(*arrays))
''',
    "_onehot": '''
def _onehot(y, scores):
    """Integer labels y, shape (...), as one-hot rows shaped like scores, (..., classes)."""
    classes = tf.shape(scores)[-1]
    tf.debugging.assert_non_negative(y, message="a class label is negative")
    tf.debugging.assert_less(y, classes, message="a class label is not below the number of classes")
    return tf.one_hot(y, classes, dtype=scores.dtype)
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

_COMMON = {
    "_shape": '''
def _shape(*arrays):
    shape = tf.shape(arrays[0])
    for a in arrays[1:]:
        shape = tf.broadcast_dynamic_shape(shape, tf.shape(a))
    return shape
''',
    "_broadcast": '''
def _broadcast(x, ref, *context):
    """x broadcast to the shape it takes among the context tensors (a number takes ref's dtype)."""
    x = _as(x, ref) if not tf.is_tensor(x) else x
    if context and all(c.shape.is_fully_defined() for c in (x, *context)):
        shape = tf.broadcast_static_shape(x.shape, context[0].shape)
        for c in context[1:]:
            shape = tf.broadcast_static_shape(shape, c.shape)
        if shape == x.shape:
            return x
    return tf.broadcast_to(x, _shape(x, *context))
''',
    "_axes": '''
def _axes(ndim, axis):
    """The axes a reduction spans: all but the batch axis ('sample'), every axis ('all'), or one."""
    if axis == "sample":
        return list(range(1, ndim))
    if axis == "all":
        return list(range(ndim))
    return [ndim + axis]
''',
    "_sum": '''
def _sum(x, axis):
    axes = _axes(len(x.shape), axis)
    return tf.reduce_sum(x, axis=axes, keepdims=True) if axes else x
''',
    "_max": '''
def _max(x, axis):
    """The shift of a logsumexp: the max over the axes (0 where it is not finite)."""
    axes = _axes(len(x.shape), axis)
    m = tf.reduce_max(x, axis=axes, keepdims=True) if axes else x
    return tf.where(tf.math.is_finite(m), m, tf.zeros_like(m))
''',
    "_logsumexp": '''
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
''',
    "_count": '''
def _count(axis, ref, *context):
    """How many elements a reduction over `axis` spans, in ref's dtype."""
    rank = max(len(c.shape) for c in context)
    shape = _shape(*context)
    return tf.cast(tf.reduce_prod(tf.gather(shape, _axes(rank, axis))), ref.dtype)
''',
    "_sum_to": '''
def _sum_to(d, like):
    """Sum d over the axes that broadcasting added to like."""
    axes, _ = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(like), s1=tf.shape(d))
    return tf.reshape(tf.reduce_sum(d, axis=axes), tf.shape(like))
''',
    "_collect": '''
def _collect(d, like, *context):
    """The adjoint of broadcasting: d over the context's shape, summed down to like's shape (d itself when
    the static shapes show it has that shape already)."""
    d = _as(d, like)
    shapes = [t.shape for t in (d, like, *context)]
    if all(s.is_fully_defined() for s in shapes) and d.shape == like.shape:
        full = shapes[0]
        for s in shapes[1:]:
            full = tf.broadcast_static_shape(full, s)
        if full == like.shape:
            return d
    return _sum_to(tf.broadcast_to(d, _shape(d, like, *context)), like)
''',
    "_weights": '''
def _weights(sample_weight, ref, rank):
    """Weights per sample (N,) or per loss value, in ref's dtype, aligned to the leading axes."""
    w = _as(sample_weight, ref)
    return tf.reshape(w, tf.concat([tf.shape(w), tf.ones([rank - len(w.shape)], tf.int32)], axis=0))
''',
}

_REDUCTIONS = {
    "mean": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """d loss / d l for each loss value: 1/N for a mean, w / sum(w) for a weighted one."""
    if sample_weight is None:
        return 1 / tf.cast(tf.maximum(tf.reduce_prod(_shape(*context)), 1), ref.dtype)
    shape = _shape(*context)
    w = _weights(sample_weight, ref, max(len(c.shape) for c in context))
    return w / tf.reduce_sum(tf.broadcast_to(w, shape))
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The mean of the loss values, or their weighted mean sum(w l) / sum(w)."""
    if sample_weight is None:
        return tf.reduce_mean(l)
    w = tf.broadcast_to(_weights(sample_weight, l, len(l.shape)), tf.shape(l))
    return tf.reduce_sum(w * l) / tf.reduce_sum(w)
''',
    },
    "sum": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """d loss / d l for each loss value: 1 for a sum, w for a weighted one."""
    if sample_weight is None:
        return tf.cast(1, ref.dtype)
    return _weights(sample_weight, ref, max(len(c.shape) for c in context))
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The sum of the loss values, or sum(w l)."""
    if sample_weight is None:
        return tf.reduce_sum(l)
    return tf.reduce_sum(_weights(sample_weight, l, len(l.shape)) * l)
''',
    },
    "none": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """Derivatives are those of the sum of the (weighted) loss values."""
    if sample_weight is None:
        return tf.cast(1, ref.dtype)
    return _weights(sample_weight, ref, max(len(c.shape) for c in context))
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The loss values (times their weights)."""
    if sample_weight is None:
        return tf.identity(l)
    return _weights(sample_weight, l, len(l.shape)) * l
''',
        "_squeeze": '''
def _squeeze(l, axis):
    """The loss values as PyTorch's reduction='none' gives them: the axes a reduction kept dropped."""
    if axis == "sample":
        return tf.reshape(l, tf.shape(l)[:1])
    if axis == "all":
        return tf.reshape(l, [])
    return tf.squeeze(l, axis=axis)
''',
    },
}


def _extras(spec, ns) -> str:
    from .keras_objects import framework_objects

    return framework_objects(spec, ns)


BACKEND = Backend(
    name="tensorflow",
    printer=TensorFlowLossPrinter,
    imports=(("tensorflow", "tf"),),
    helpers={**HELPERS, **_COMMON},
    reductions=_REDUCTIONS,
    extras=_extras,
    notes=("TensorFlow: plain functions in the definition's order; loss_with_gradient (tf.custom_gradient); a "
           "keras.losses.Loss <Name>Loss as Keras' own losses are: call(y_true, y_pred) with y_true the arguments "
           "that are not targets and y_pred the targets (several packed along the last axis), Keras' rank "
           "matching, sample_weight, dtype policy and reduction, saved under a name that identifies the formula.",),
    inplace=False,
    tensor_scalars=True,
)
