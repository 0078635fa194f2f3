"""The PyTorch backend: SymPy's TorchPrinter with the shared mixin, plus an autograd.Function whose
backward is the symbolic gradient and an nn.Module."""

from __future__ import annotations

from . import sympy_printer_module
from .base import AXES_HELPER, ArrayPrinterMixin, Backend

TorchPrinter = sympy_printer_module("pytorch", "torch").TorchPrinter


class TorchLossPrinter(ArrayPrinterMixin, TorchPrinter):
    ALIAS = "torch"
    MODULE = "torch"
    FILL_LIKE = "{m}.as_tensor({1}, dtype={0}.dtype, device={0}.device)"
    SETTINGS = {"torch_version": "2.2"}  # printing never depends on the installed torch



HELPERS = {
    "_onehot": '''
def _onehot(y, scores):
    """Integer labels y, shape (...), as one-hot rows shaped like scores, (..., classes)."""
    return torch.nn.functional.one_hot(y.long(), scores.shape[-1]).to(scores.dtype)
''',
    "_hessian_blocks": '''
def _hessian_blocks(hvp, targets, per_sample):
    """Dense Hessian from products with basis vectors: (batch, d_i, d_j) blocks per sample, or the
    whole matrix, shaped target_i.shape + target_j.shape, when a reduction spans the batch."""
    k = len(targets)
    lead = [tuple(t.shape[:1]) if per_sample else () for t in targets]
    sizes = [int(t[0].numel()) if per_sample else int(t.numel()) for t in targets]
    columns = [[[] for _ in range(k)] for _ in range(k)]
    for j, t in enumerate(targets):
        for c in range(sizes[j]):
            basis = torch.zeros(sizes[j], dtype=t.dtype, device=t.device)
            basis[c] = 1
            vs = [torch.zeros_like(u) for u in targets]
            vs[j] = basis.reshape((1,) + tuple(t.shape[1:]) if per_sample else t.shape).expand(t.shape).clone()
            products = hvp(tuple(vs))
            for i in range(k):
                columns[i][j].append(products[i].reshape(lead[i] + (sizes[i],)))
    blocks = [[torch.stack(columns[i][j], dim=-1) for j in range(k)] for i in range(k)]
    if not per_sample:
        blocks = [[blocks[i][j].reshape(tuple(targets[i].shape) + tuple(targets[j].shape)) for j in range(k)]
                  for i in range(k)]
    return tuple(tuple(row) for row in blocks)
''',
    "_softplus": '''
def _softplus(x):
    """log(1 + exp(x)) = logaddexp(x, 0): exact for large |x| (no threshold), and its autodiff is sigmoid."""
    return torch.logaddexp(x, torch.zeros_like(x))
''',
    "_matvec": '''
def _matvec(X, w):
    return X @ w
''',
    "_weighted_gram": '''
def _weighted_gram(X, h):
    """X^T diag(h) X for one output; for k outputs (h of shape (n, k)) the (d k, d k) block-diagonal
    Hessian in the row-major order of W (d, k)."""
    if h.dim() == 1:
        return X.T @ (h[:, None] * X)
    d, k = X.shape[1], h.shape[1]
    blocks = torch.einsum("ia,ic,ib->cab", X, h, X)
    eye = torch.eye(k, dtype=h.dtype, device=h.device)
    return torch.einsum("cab,ce->acbe", blocks, eye).reshape(d * k, d * k)
''',
    "_block_gram": '''
def _block_gram(X, blocks):
    """sum_i (x_i x_i^T) (x) H_i, the Hessian in W (d, k) of a per-sample loss of X @ W, as a (d k, d k)
    matrix in the row-major order of W; no Kronecker product is formed."""
    d, k = X.shape[1], blocks.shape[1]
    return torch.einsum("ia,icj,ib->acbj", X, blocks, X).reshape(d * k, d * k)
''',
}

_COMMON = '''
def _shape(*arrays):
    return torch.broadcast_shapes(*(a.shape if torch.is_tensor(a) else () for a in arrays))


def _broadcast(x, *context):
    """x broadcast to the shape it takes among the context tensors."""
    if not torch.is_tensor(x):
        x = torch.as_tensor(x, dtype=context[0].dtype if context else None)
    return x.expand(_shape(x, *context))


''' + AXES_HELPER + '''

def _sum(x, axis):
    axes = _axes(x.dim(), axis)
    return torch.sum(x, dim=axes, keepdim=True) if axes else x


def _max(x, axis):
    """The shift of a logsumexp: the max over the axes (0 where it is not finite)."""
    axes = _axes(x.dim(), axis)
    m = torch.amax(x, dim=axes, keepdim=True) if axes else x
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _logsumexp(x, axis):
    """log(sum(exp(x))) of an x already shifted by its max (x <= 0, its top entries 0), as log1p of the sum
    without one top term: no overflow, no log(0), and a dominant entry's tiny result keeps its digits."""
    axes = _axes(x.dim(), axis)
    if not axes:
        return x
    top = x == 0
    rest = torch.sum(torch.where(top, torch.zeros_like(x), torch.exp(x)), dim=axes, keepdim=True)
    ties = torch.sum(top, dim=axes, keepdim=True).to(x.dtype) - 1
    return torch.log1p(rest + ties)


def _count(axis, ref, *context):
    """How many elements a reduction over `axis` spans."""
    shape = _shape(*context)
    n = 1
    for a in _axes(len(shape), axis):
        n *= shape[a]
    return torch.tensor(n, dtype=ref.dtype, device=ref.device)


def _collect(d, like, *context):
    """The adjoint of broadcasting: d over the context's shape, summed down to like's shape."""
    d = torch.as_tensor(d, dtype=like.dtype, device=like.device)
    return d.expand(_shape(d, like, *context)).sum_to_size(like.shape)
'''

_REDUCTIONS = {
    "mean": '''
def _seed(ref, *context):
    """d loss / d l for each loss value: 1/N for a mean."""
    n = 1
    for size in _shape(*context):
        n *= size
    return torch.tensor(1 / max(n, 1), dtype=ref.dtype, device=ref.device)


def _reduce(l):
    return torch.mean(l)
''',
    "sum": '''
def _seed(ref, *context):
    """d loss / d l for each loss value: 1 for a sum."""
    return torch.tensor(1, dtype=ref.dtype, device=ref.device)


def _reduce(l):
    return torch.sum(l)
''',
    "none": '''
def _seed(ref, *context):
    """Derivatives are those of the sum of the loss values."""
    return torch.tensor(1, dtype=ref.dtype, device=ref.device)


def _reduce(l):
    return l.contiguous()


def _squeeze(l, axis):
    """The loss values as PyTorch's reduction='none' gives them: the axes a reduction kept dropped."""
    if axis == "sample":
        return l.reshape(l.shape[:1])
    if axis == "all":
        return l.reshape(())
    return l.squeeze(axis)
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
    notes=("PyTorch: plain functions, an autograd.Function whose backward is grad(), and an nn.Module.",),
)
