"""TensorFlow framework objects of an emitted module: `loss_with_gradient` (tf.custom_gradient with the
symbolic gradient) and, for losses of (y_true, y_pred), a serializable keras.losses.Loss.

Every name these templates introduce comes from the module's `Namespace`.
"""

from __future__ import annotations


def framework_objects(spec, ns) -> str:
    tf, loss, grad, values = ns.glob("tf"), ns.glob("loss"), ns.glob("grad"), ns.glob("values")
    scope = ns.scope()
    upstream, grads, inner, backward = (scope.local(n) for n in ("upstream", "grads", "_loss", "backward"))
    args = ", ".join(spec.arguments)
    targets = ", ".join(spec.targets)
    params = [n for n, _ in spec.parameters]
    kw = "".join(f", {n}={n}" for n in params)
    # the vector-Jacobian product: for reduction='none' grad() with upstream as the weights
    vjp = spec.reduction == "none"
    weights = f", sample_weight={upstream}" if vjp else ""
    if vjp:
        scaled = f"({grads},)" if len(spec.targets) == 1 else f"tuple({grads})"
    else:
        scaled = f"({upstream} * {grads},)" if len(spec.targets) == 1 else f"tuple({upstream} * g for g in {grads})"
    text = f'''
def loss_with_gradient({args}{spec.keyword_params}):
    """loss() whose gradient (by the targets {targets}) is the symbolic grad(), via tf.custom_gradient."""

    @{tf}.custom_gradient
    def {inner}({targets}):
        def {backward}({upstream}):
            {grads} = {grad}({args}{kw}{weights})
            return {scaled}
        return {loss}({args}{kw}), {backward}

    return {inner}({targets})
'''
    if len(spec.arguments) == 2 and spec.targets == (spec.arguments[1],):
        method = ns.scope()
        self_, l, rank = method.local("self"), method.local("l"), method.local("rank")
        y_true, y_pred = spec.arguments
        per_sample = {"mean": f"{tf}.reduce_mean", "sum": f"{tf}.reduce_sum", "none": f"{tf}.reduce_mean"}[spec.reduction]
        keras_reduction = {"mean": "sum_over_batch_size", "sum": "sum", "none": "none"}[spec.reduction]
        config = "".join(f", {n!r}: {self_}.{n}" for n in params)
        init = "".join(f"{n}={v!r}, " for n, v in spec.parameters)
        assign = "".join(f"\n        {self_}.{n} = {n}" for n in params)
        call_kw = "".join(f", {n}={self_}.{n}" for n in params)
        text += f'''

@{tf}.keras.utils.register_keras_serializable(package="losscomp")
class {spec.class_name}({tf}.keras.losses.Loss):
    """Keras loss for model.compile(loss=...): per-sample {per_sample.split(".")[-1][7:]} of l over the
    non-batch axes, then Keras's reduction ({keras_reduction!r} by default)."""

    def __init__({self_}, {init}reduction={keras_reduction!r}, name={spec.name!r}, **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs){assign}

    def call({self_}, {y_true}, {y_pred}):
        {y_pred} = {tf}.convert_to_tensor({y_pred})
        {y_true} = {tf}.cast({y_true}, {y_pred}.dtype)
        {l} = {values}({y_true}, {y_pred}{call_kw})
        {rank} = len({l}.shape)
        return {per_sample}({l}, axis=list(range(1, {rank}))) if {rank} > 1 else {l}

    def get_config({self_}):
        return {{**super().get_config(){config}}}
'''
    return text
