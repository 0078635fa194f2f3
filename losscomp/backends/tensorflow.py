"""The TensorFlow backend: SymPy's TensorflowPrinter with the shared mixin, plus a
`tf.custom_gradient` wrapper and a serializable `keras.losses.Loss` subclass."""

from __future__ import annotations

from sympy.printing.tensorflow import TensorflowPrinter

from .base import ArrayPrinterMixin, Backend


class TensorFlowLossPrinter(ArrayPrinterMixin, TensorflowPrinter):
    ALIAS = "tf"
    MODULE = "tensorflow"
    # tf.fill would take the dtype of the value; adding to zeros keeps the reference's dtype.
    FILL_LIKE = "({m}.zeros_like({0}) + {1})"
    # In a graph, tf.where converts a Python number to float32 whatever its other operand is.
    SCALAR_BRANCH = "{m}.cast({1}, {0}.dtype)"
    FUNCTIONS = {
        "exp": "{m}.exp({0})", "log": "{m}.math.log({0})", "log1p": "{m}.math.log1p({0})",
        "expm1": "{m}.math.expm1({0})", "sqrt": "{m}.sqrt({0})", "sin": "{m}.sin({0})", "cos": "{m}.cos({0})",
        "tanh": "{m}.tanh({0})", "sinh": "{m}.sinh({0})", "cosh": "{m}.cosh({0})", "abs": "{m}.abs({0})",
        "sign": "{m}.sign({0})", "maximum": "{m}.maximum({0}, {1})", "minimum": "{m}.minimum({0}, {1})",
        "relu": "{m}.nn.relu({0})", "clip": "{m}.minimum({m}.maximum({0}, {1}), {2})",
        "sigmoid": "{m}.sigmoid({0})", "softplus": "_softplus({0})",
        "erf": "{m}.math.erf({0})", "lgamma": "{m}.math.lgamma({0})", "digamma": "{m}.math.digamma({0})",
    }
    LOGICAL = {"And": "{m}.logical_and", "Or": "{m}.logical_or", "Not": "{m}.logical_not"}

    def __init__(self, tensors=(), reference=None):
        super().__init__(tensors, reference)
        self._settings["tensorflow_version"] = "2.16"  # printing never depends on the installed TF


HELPERS = {
    "_softplus": '''
def _softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), exact for large |x|."""
    return tf.maximum(x, 0) + tf.math.log1p(tf.exp(-tf.abs(x)))
''',
    "_matvec": '''
def _matvec(X, w):
    return tf.linalg.matvec(X, w)
''',
    "_weighted_gram": '''
def _weighted_gram(X, h):
    """X^T diag(h) X."""
    return tf.linalg.matmul(X, h[:, None] * X, transpose_a=True)
''',
}

_COMMON = '''
def _shape(*inputs):
    shape = tf.shape(inputs[0])
    for x in inputs[1:]:
        shape = tf.broadcast_dynamic_shape(shape, tf.shape(x))
    return shape


def _full(d, target, *inputs):
    """d as a tensor of target's dtype, broadcast to the inputs' shape."""
    return tf.broadcast_to(tf.cast(d, target.dtype), _shape(*inputs))


def _sum_to(d, target):
    """Sum d over the axes that broadcasting added to target."""
    axes, _ = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(target), s1=tf.shape(d))
    return tf.reshape(tf.reduce_sum(d, axis=axes), tf.shape(target))
'''

_REDUCTIONS = {
    "mean": '''
def _reduce(l, *inputs):
    """Mean over every element of the broadcast inputs."""
    return tf.reduce_mean(tf.broadcast_to(l, _shape(l, *inputs)))


def _to_target(d, target, *inputs):
    """d/d(target) of the mean: broadcast, divide by the element count, sum back to target's shape."""
    full = _full(d, target, *inputs)
    return _sum_to(full / tf.cast(tf.maximum(tf.size(full), 1), full.dtype), target)
''',
    "sum": '''
def _reduce(l, *inputs):
    """Sum over every element of the broadcast inputs."""
    return tf.reduce_sum(tf.broadcast_to(l, _shape(l, *inputs)))


def _to_target(d, target, *inputs):
    """d/d(target) of the sum: broadcast, then sum back to target's shape."""
    return _sum_to(_full(d, target, *inputs), target)
''',
    "none": '''
def _reduce(l, *inputs):
    """No reduction: the loss of every element, broadcast."""
    return tf.broadcast_to(l, _shape(l, *inputs))


def _to_target(d, target, *inputs):
    """Derivatives of the sum of the elements, summed back to target's shape."""
    return _sum_to(_full(d, target, *inputs), target)
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
        l = tf.broadcast_to(_elements({y_true}, {y_pred}{call_kw}), _shape({y_true}, {y_pred}))
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
