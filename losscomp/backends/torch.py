"""The PyTorch backend: SymPy's TorchPrinter with the shared mixin. Parameters become 0-d tensors of
the inputs' dtype (a tensor parameter keeps its autograd graph); derivative functions run under
torch.no_grad() and write into their own dead temporaries."""

from __future__ import annotations

from . import sympy_printer_module
from .base import AXES_HELPER, ArrayPrinterMixin, Backend

TorchPrinter = sympy_printer_module("pytorch", "torch").TorchPrinter


class TorchLossPrinter(ArrayPrinterMixin, TorchPrinter):
    ALIAS = "torch"
    MODULE = "torch"
    TENSOR_SCALARS = True
    FILL_LIKE = "$torch.as_tensor({1}, dtype={0}.dtype, device={0}.device)"
    SETTINGS = {"torch_version": "2.2"}  # printing never depends on the installed torch
    CALLS = {
        **ArrayPrinterMixin.CALLS,
        "relu": "$torch.relu({0})", "clip": "$torch.clamp({0}, {1}, {2})", "softplus": "$_softplus({0})",
        "polygamma": "$torch.polygamma({0}, {1})",
    }
    CALLS_OUT = {
        **{name: "$torch.%s({0}, out={o})" % name for name in (
            "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sinh", "cosh", "abs", "sign", "sigmoid")},
        "maximum": "$torch.maximum({0}, {1}, out={o})", "minimum": "$torch.minimum({0}, {1}, out={o})",
        "relu": "$torch.clamp({0}, min=0, out={o})", "clip": "$torch.clamp({0}, {1}, {2}, out={o})",
    }
    ARITH_OUT = {"add": "$torch.add({0}, {1}, out={o})", "sub": "$torch.sub({0}, {1}, out={o})",
                 "mul": "$torch.mul({0}, {1}, out={o})", "div": "$torch.div({0}, {1}, out={o})",
                 "neg": "$torch.neg({0}, out={o})"}
    ARITH_NEEDS_TENSOR_FIRST = True
    AXPY = "$torch.add({0}, {1}, alpha={2})"
    AXPY_OUT = "$torch.add({0}, {1}, alpha={2}, out={o})"

    def call(self, name, args, out):
        # torch.maximum/minimum/clamp want tensors; a number goes to clamp's min= or max=
        if name in ("maximum", "minimum") and not all(self.is_tensor_operand(a) for a in args):
            tensor, number = (args[0], args[1]) if self.is_tensor_operand(args[0]) else (args[1], args[0])
            bound = "min" if name == "maximum" else "max"
            if out is not None:
                return self.fill(f"$torch.clamp({{0}}, {bound}={{1}}, out={{2}})", self.operand(tensor),
                                 self.operand(number), out)
            return self.fill(f"$torch.clamp({{0}}, {bound}={{1}})", self.operand(tensor), self.operand(number))
        if name in ("clip", "xlogy") and not self.is_tensor_operand(args[0]):
            args = (self.typed(args[0]), *args[1:])  # these take a tensor first
        return super().call(name, args, out)


HELPERS = {
    "_floating": '''
def _floating(x):
    """x as a floating tensor: integer and boolean tensors (and Python numbers) take the default float dtype."""
    if not torch.is_tensor(x):
        x = torch.as_tensor(x)
    return x if x.is_floating_point() or x.is_complex() else x.to(torch.get_default_dtype())
''',
    "_labels": '''
def _labels(y):
    """Class labels as an integer tensor (floats only when they hold whole numbers)."""
    if not torch.is_tensor(y):
        y = torch.as_tensor(y)
    if not (y.is_floating_point() or y.is_complex()):
        return y.long()
    if bool(torch.all(torch.floor(y) == y)):
        return y.long()
    raise ValueError(f"class labels must be integers, not {y.dtype} values such as {y.reshape(-1)[0].item()!r}")
''',
    "_scalar": '''
def _scalar(x, ref):
    """A parameter as a 0-d tensor of ref's dtype and device; a tensor parameter keeps its autograd graph."""
    if torch.is_tensor(x):
        return x.to(dtype=ref.dtype, device=ref.device)
    return torch.tensor(x, dtype=ref.dtype, device=ref.device)
''',
    "_per_sample": '''
def _per_sample(x, ndim):
    """One value per sample, shape (N,), aligned to the leading axis of the scores: (N, 1, ..., 1)."""
    return x.reshape(tuple(x.shape) + (1,) * (ndim - 1))
''',
    "_check_shapes": '''
def _check_shapes(*arrays):
    """(name, tensor, role) triples. Arguments of the role 'element' have the scores' number of axes, or
    none: broadcasting aligns tensors of different ranks on the right, and (N,) against (N, 1) is an
    outer product. 'sample' tensors are (N,), 'class' tensors (C,), 'index' labels the scores' shape
    without its last axis. Returns the number of axes of the scores."""
    scores = [(name, a) for name, a, role in arrays if role == "element" and a.dim() > 0]
    if not scores:
        return 0
    rank = max(a.dim() for _, a in scores)
    top, first = next((name, tuple(a.shape)) for name, a in scores if a.dim() == rank)
    for name, a in scores:
        if a.dim() != rank:
            raise ValueError(f"{name} has shape {tuple(a.shape)} and {top} has shape {first}: arguments broadcast "
                             f"against each other only with the same number of axes (else (N,) against (N, 1) "
                             f"is an (N, N) outer product); reshape {name} to {rank} axes, or declare it "
                             f"[sample] or [class] in the loss")
    try:
        shape = tuple(torch.broadcast_shapes(*(a.shape for _, a in scores)))
    except RuntimeError:
        listed = ", ".join(f"{name} {tuple(a.shape)}" for name, a in scores)
        raise ValueError(f"the shapes {listed} do not broadcast against each other") from None
    for name, a, role in arrays:
        if role == "sample" and (a.dim() != 1 or a.shape[0] not in (1, shape[0])):
            raise ValueError(f"{name} holds one value per sample: shape ({shape[0]},) beside {top} {first}, "
                             f"not {tuple(a.shape)}")
        if role == "class" and (a.dim() != 1 or a.shape[0] not in (1, shape[-1])):
            raise ValueError(f"{name} holds one value per class: shape ({shape[-1]},) beside {top} {first}, "
                             f"not {tuple(a.shape)}")
        if role == "index" and (a.dim() != rank - 1 or any(n not in (1, m) for n, m in zip(a.shape, shape))):
            raise ValueError(f"{name} holds class labels: shape {shape[:-1]} (the scores' shape without the "
                             f"class axis) beside {top} {first}, not {tuple(a.shape)}")
    return rank
''',
    "_validate": '''
def _validate(name, x, domain):
    """Raise a ValueError naming the first element of x outside its domain."""
    tests = {
        "positive": lambda v: v > 0, "nonnegative": lambda v: v >= 0, "unit": lambda v: (v > 0) & (v < 1),
        "binary": lambda v: (v == 0) | (v == 1), "sign": lambda v: (v == -1) | (v == 1),
        "count": lambda v: (v >= 0) & (torch.floor(v) == v), "index": lambda v: (v >= 0) & (torch.floor(v) == v),
        "onehot": lambda v: (v == 0) | (v == 1), "simplex": lambda v: v >= 0,
        "real": lambda v: torch.isfinite(v),
    }
    v = x.double() if x.is_floating_point() else x
    good = torch.isfinite(v.double()) & tests[domain](v)
    if domain in ("onehot", "simplex") and x.dim() > 1 and bool(good.all()):
        rows = v.sum(dim=tuple(range(1, x.dim())), keepdim=True)
        good = ((rows - 1).abs() <= 1e-6 * x[0].numel()).expand(x.shape)
    if not bool(good.all()):
        where = [int(i) for i in torch.nonzero(~good)[0]]
        raise ValueError(f"{name}{where} = {x[tuple(where)].item()!r} is outside the domain {domain!r} of {name}")
''',
    "_numel": '''
def _numel(*arrays):
    """How many values the tensors make together when broadcast."""
    n = 1
    for size in torch.broadcast_shapes(*(a.shape for a in arrays)):
        n *= size
    return n
''',
    "_onehot": '''
def _onehot(y, scores):
    """Integer labels y, shape (...), as one-hot rows shaped like scores, (..., classes)."""
    classes = scores.shape[-1]
    if y.numel() and bool((y.min() < 0) | (y.max() >= classes)):
        bad = y[(y < 0) | (y >= classes)].reshape(-1)[0].item()
        raise ValueError(f"class label {bad} is outside [0, {classes}): the scores have {classes} classes")
    return torch.nn.functional.one_hot(y, classes).to(scores.dtype)
''',
    "_softplus": '''
def _softplus(x):
    """log(1 + exp(x)) = logaddexp(x, 0): exact for large |x| (no threshold), and its autodiff is sigmoid."""
    return torch.logaddexp(x, torch.zeros((), dtype=x.dtype, device=x.device))
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

_COMMON = {
    "_shape": '''
def _shape(*arrays):
    return torch.broadcast_shapes(*(a.shape if torch.is_tensor(a) else () for a in arrays))
''',
    "_broadcast": '''
def _broadcast(x, ref, *context):
    """x broadcast to the shape it takes among the context tensors (a number takes ref's dtype)."""
    if not torch.is_tensor(x):
        x = torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
    shape = _shape(x, *context)
    return x if x.shape == shape else x.expand(shape)
''',
    "_axes": AXES_HELPER,
    "_sum": '''
def _sum(x, axis):
    axes = _axes(x.dim(), axis)
    return torch.sum(x, dim=axes, keepdim=True) if axes else x
''',
    "_max": '''
def _max(x, axis):
    """The shift of a logsumexp: the max over the axes (0 where it is not finite)."""
    axes = _axes(x.dim(), axis)
    m = torch.amax(x, dim=axes, keepdim=True) if axes else x
    return torch.where(torch.isfinite(m), m, 0.0)
''',
    "_logsumexp": '''
def _logsumexp(x, axis):
    """log(sum(exp(x))) of an x already shifted by its max (x <= 0, its top entries 0), as log1p of the sum
    without one top term: no overflow, no log(0), and a dominant entry's tiny result keeps its digits."""
    axes = _axes(x.dim(), axis)
    if not axes:
        return x
    top = x == 0
    e = torch.exp(x)
    e = e.masked_fill(top, 0) if torch.is_grad_enabled() else e.masked_fill_(top, 0)  # autograd keeps exp's output
    rest = torch.sum(e, dim=axes, keepdim=True)
    ties = torch.sum(top, dim=axes, keepdim=True).to(x.dtype) - 1
    return torch.log1p(rest + ties)
''',
    "_count": '''
def _count(axis, ref, *context):
    """How many elements a reduction over `axis` spans, as a 0-d tensor of ref's dtype."""
    shape = _shape(*context)
    n = 1
    for a in _axes(len(shape), axis):
        n *= shape[a]
    return torch.tensor(n, dtype=ref.dtype, device=ref.device)
''',
    "_collect": '''
def _collect(d, like, *context):
    """The adjoint of broadcasting: d over the context's shape, summed down to like's shape (d itself when
    it has that shape already)."""
    full = _shape(d, like, *context)
    if torch.is_tensor(d) and d.shape == full == like.shape:
        return d if d.dtype == like.dtype else d.to(like.dtype)
    d = torch.as_tensor(d, dtype=like.dtype, device=like.device)
    return d.expand(full).sum_to_size(like.shape).clone()
''',
    "_weights": '''
def _weights(sample_weight, shape):
    """Weights per sample (N,) or per loss value, aligned to the leading axes of the loss values."""
    w = sample_weight if torch.is_tensor(sample_weight) else torch.as_tensor(sample_weight)
    if not w.is_floating_point():
        w = w.to(torch.get_default_dtype())
    if w.dim() > len(shape) or any(n not in (1, m) for n, m in zip(w.shape, shape)):
        raise ValueError(f"sample_weight of shape {tuple(w.shape)} does not fit loss values of shape {tuple(shape)}")
    return w.reshape(tuple(w.shape) + (1,) * (len(shape) - w.dim()))
''',
}

_REDUCTIONS = {
    "mean": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """d loss / d l for each loss value: 1/N for a mean, w / sum(w) for a weighted one."""
    if sample_weight is None:
        return torch.tensor(1 / max(_numel(*context), 1), dtype=ref.dtype, device=ref.device)
    shape = _shape(*context)
    w = _weights(sample_weight, shape).to(device=ref.device)
    return w / w.expand(shape).sum()
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The mean of the loss values, or their weighted mean sum(w l) / sum(w)."""
    if sample_weight is None:
        return torch.mean(l)
    w = _weights(sample_weight, l.shape).to(device=l.device).expand(l.shape)
    return torch.sum(w * l) / torch.sum(w)
''',
    },
    "sum": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """d loss / d l for each loss value: 1 for a sum, w for a weighted one."""
    if sample_weight is None:
        return torch.tensor(1, dtype=ref.dtype, device=ref.device)
    return _weights(sample_weight, _shape(*context)).to(device=ref.device)
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The sum of the loss values, or sum(w l)."""
    if sample_weight is None:
        return torch.sum(l)
    return torch.sum(_weights(sample_weight, l.shape).to(device=l.device) * l)
''',
    },
    "none": {
        "_seed": '''
def _seed(ref, sample_weight, *context):
    """Derivatives are those of the sum of the (weighted) loss values."""
    if sample_weight is None:
        return torch.tensor(1, dtype=ref.dtype, device=ref.device)
    return _weights(sample_weight, _shape(*context)).to(device=ref.device)
''',
        "_reduce": '''
def _reduce(l, sample_weight=None):
    """The loss values (times their weights)."""
    if sample_weight is None:
        return l.contiguous()
    return _weights(sample_weight, l.shape).to(device=l.device) * l
''',
        "_squeeze": '''
def _squeeze(l, axis):
    """The loss values as PyTorch's reduction='none' gives them: the axes a reduction kept dropped."""
    if axis == "sample":
        return l.reshape(l.shape[:1])
    if axis == "all":
        return l.reshape(())
    return l.squeeze(axis)
''',
    },
}


def _extras(spec, ns) -> str:
    from .torch_objects import framework_objects

    return framework_objects(spec, ns)


BACKEND = Backend(
    name="torch",
    printer=TorchLossPrinter,
    imports=(("torch", "torch"),),
    helpers={**HELPERS, **_COMMON},
    reductions=_REDUCTIONS,
    extras=_extras,
    notes=("PyTorch: plain functions in the definition's order; an autograd.Function whose backward is grad(); "
           "an nn.Module <Name>Loss as the torch.nn losses are: forward(input, target, ...) in PyTorch's order "
           "(input is the prediction, the first target; target is the first other argument), "
           "reduction='mean' | 'sum' | 'none', parameters as constructor arguments (tensors may be learned).",),
    tensor_scalars=True,
)
