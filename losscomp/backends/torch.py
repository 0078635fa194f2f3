"""The PyTorch backend: SymPy's TorchPrinter with the shared mixin, plus an autograd.Function whose
backward is the symbolic gradient and an nn.Module."""

from __future__ import annotations

from sympy.printing.pytorch import TorchPrinter

from .base import ArrayPrinterMixin, Backend


class TorchLossPrinter(ArrayPrinterMixin, TorchPrinter):
    ALIAS = "torch"
    MODULE = "torch"
    FUNCTIONS = {
        "exp": "{m}.exp({0})", "log": "{m}.log({0})", "log1p": "{m}.log1p({0})", "expm1": "{m}.expm1({0})",
        "sqrt": "{m}.sqrt({0})", "sin": "{m}.sin({0})", "cos": "{m}.cos({0})", "tanh": "{m}.tanh({0})",
        "sinh": "{m}.sinh({0})", "cosh": "{m}.cosh({0})", "abs": "{m}.abs({0})", "sign": "{m}.sign({0})",
        "maximum": "{m}.maximum({0}, {1})", "minimum": "{m}.minimum({0}, {1})",
        "relu": "{m}.relu({0})", "clip": "{m}.minimum({m}.maximum({0}, {1}), {2})",
        "sigmoid": "{m}.sigmoid({0})", "softplus": "_softplus({0})",
        "erf": "{m}.erf({0})", "lgamma": "{m}.lgamma({0})", "digamma": "{m}.digamma({0})",
    }

    def __init__(self, tensors=(), reference=None):
        super().__init__(tensors, reference)


HELPERS = {
    "_softplus": '''
def _softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), exact for large |x| (no threshold)."""
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-torch.abs(x)))
''',
    "_matvec": '''
def _matvec(X, w):
    return X @ w
''',
    "_weighted_gram": '''
def _weighted_gram(X, h):
    """X^T diag(h) X."""
    return X.T @ (h[:, None] * X)
''',
}

_COMMON = '''
def _shape(*inputs):
    return torch.broadcast_shapes(*(torch.as_tensor(x).shape for x in inputs))


def _full(d, target, *inputs):
    """d as a tensor with target's dtype and device, broadcast to the inputs' shape."""
    return torch.as_tensor(d, dtype=target.dtype, device=target.device).expand(_shape(*inputs))
'''

_REDUCTIONS = {
    "mean": '''
def _reduce(l, *inputs):
    """Mean over every element of the broadcast inputs."""
    return torch.mean(l.expand(_shape(l, *inputs)) if torch.is_tensor(l) else torch.as_tensor(l))


def _to_target(d, target, *inputs):
    """d/d(target) of the mean: broadcast, divide by the element count, sum back to target's shape."""
    full = _full(d, target, *inputs)
    return (full / max(full.numel(), 1)).sum_to_size(target.shape)
''',
    "sum": '''
def _reduce(l, *inputs):
    """Sum over every element of the broadcast inputs."""
    return torch.sum(l.expand(_shape(l, *inputs)) if torch.is_tensor(l) else torch.as_tensor(l))


def _to_target(d, target, *inputs):
    """d/d(target) of the sum: broadcast, then sum back to target's shape."""
    return _full(d, target, *inputs).sum_to_size(target.shape)
''',
    "none": '''
def _reduce(l, *inputs):
    """No reduction: the loss of every element, broadcast."""
    return l.expand(_shape(l, *inputs)).clone()


def _to_target(d, target, *inputs):
    """Derivatives of the sum of the elements, summed back to target's shape."""
    return _full(d, target, *inputs).sum_to_size(target.shape)
''',
}


def _extras(spec) -> str:
    args = ", ".join(spec.arguments)
    params = [n for n, _ in spec.parameters]
    forward_args = ", ".join([*spec.arguments, *params])
    saved = "".join(f"\n        ctx.{n} = {n}" for n in params)
    kw = "".join(f", {n}=ctx.{n}" for n in params)
    grads = "grads = (grads,)\n        " if len(spec.targets) == 1 else ""
    per_input = []
    for name in spec.arguments:
        if name in spec.targets:
            per_input.append(f"upstream * grads[{spec.targets.index(name)}]")
        else:
            per_input.append("None")
    per_input += ["None"] * len(params)
    init_params = "".join(f", {n}={v!r}" for n, v in spec.parameters)
    init_sig = f"self, *{init_params}" if params else "self"
    set_params = "".join(f"\n        self.{n} = {n}" for n in params)
    apply_args = ", ".join([*spec.arguments, *(f"self.{n}" for n in params)])
    return f'''
class {spec.class_name}Function(torch.autograd.Function):
    """The loss as an autograd.Function: backward is the symbolic gradient; only inputs are saved."""

    @staticmethod
    def forward(ctx, {forward_args}):
        ctx.save_for_backward({args}){saved}
        return loss({args}{spec.pass_params})

    @staticmethod
    def backward(ctx, upstream):
        {args}{"," if len(spec.arguments) == 1 else ""} = ctx.saved_tensors
        grads = grad({args}{kw})
        {grads}return {", ".join(per_input)}


class {spec.class_name}(torch.nn.Module):
    """nn.Module form of the loss; parameters are attributes that may change between calls."""

    def __init__({init_sig}):
        super().__init__(){set_params}

    def forward(self, {args}):
        return {spec.class_name}Function.apply({apply_args})
'''


BACKEND = Backend(
    name="torch",
    printer=TorchLossPrinter,
    imports=("import torch",),
    helpers=HELPERS,
    reductions={k: _COMMON + v for k, v in _REDUCTIONS.items()},
    extras=_extras,
    notes=(f"PyTorch: plain functions, an autograd.Function whose backward is grad(), and an nn.Module.",),
)
