"""Issue 3 acceptance: per-sample reductions, whole-batch reductions and several targets.

Every per-sample / multi-target catalog loss, on every backend, in float64, with inputs drawn from a
seeded generator inside each argument's domain and away from kinks:

1. grad against central differences of the emitted loss and against torch.autograd / tf.GradientTape;
2. every Hessian block against central differences of grad (and against autodiff), and hvp(v) against
   the blocks applied to v;
3. values and gradients against the implementation a user would otherwise call (torch.nn.functional,
   keras.losses) or an independent NumPy formula;
4. integer class labels, and a variance of shape (N, 1) against predictions (N, D);
5. softmax_ce: the printed derivation, the Hessian's structure and one logsumexp per sample in the
   emitted grad;
6. softmax_ce 10^3 x 100 Hessian blocks against torch.func.hessian;
7. this table and test_gradients.CASES together cover the catalog;
8. float32 in, float32 out;
and the generated examples/softmax_ce/ files are current.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import sympy

import losscomp
from losscomp import catalog
# The sibling table (elementwise losses) and its helpers: the same tolerance criterion everywhere.
from test_gradients import CASES as ELEMENTWISE_CASES
from test_gradients import assert_close, central_jacobian

BACKENDS = ("numpy", "torch", "tensorflow", "jax")
AUTODIFF_BACKENDS = ("torch", "tensorflow", "jax")
N, C = 5, 4            # samples, classes / features
KINK_GAP = 0.05        # every kink argument stays at least this far from 0
RTOL = 1e-6            # derivatives against differences and autodiff (issue 3, acceptance 1)
EXACT = 1e-12          # two computations of the same float64 formula
REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "softmax_ce"


# ---------------------------------------------------------------------------------------------
# Independent NumPy formulas, one loss value per sample (keepdims), per element, or one for the batch
# ---------------------------------------------------------------------------------------------

def _lse(z):
    m = z.max(axis=1, keepdims=True)
    return m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def _log_softmax(z):
    return z - _lse(z)


def _relu(x):
    return np.maximum(x, 0.0)


def _rowsum(x):
    return x.sum(axis=1, keepdims=True)


def _triplet_gap(anchor, positive, negative, margin):
    return _rowsum((anchor - positive) ** 2) - _rowsum((anchor - negative) ** 2) + margin


def _binary_focal(y, p, gamma, alpha):
    # The Keras formulation: p_t the probability of the true class, alpha_t its weight.
    p_t = y * p + (1 - y) * (1 - p)
    alpha_t = y * alpha + (1 - y) * (1 - alpha)
    return -alpha_t * (1 - p_t) ** gamma * np.log(p_t)


@dataclass(frozen=True)
class Case:
    id: str
    name: str                                   # catalog name
    arguments: tuple[tuple[str, str], ...]      # (name, domain), in the definition's order
    targets: tuple[str, ...]
    kind: str                                   # "element", "sample" (blocks per sample) or "batch" (axis=all)
    reference: Callable[..., np.ndarray]        # (**args, **params) -> the loss values, as values shapes them
    params: dict = field(default_factory=dict)  # passed by keyword, never the defaults
    shapes: dict = field(default_factory=dict)  # argument -> shape, default (N, C)
    kinks: Callable[..., list] = lambda **kw: []  # signed distances to kinks; each must take both signs

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.arguments)

    def shape(self, argument: str) -> tuple:
        return self.shapes.get(argument, (N, C))


TABLE = (
    Case("categorical_ce", "categorical_ce", (("y", "simplex"), ("p", "unit")), ("p",), "sample",
         lambda y, p: -_rowsum(y * np.log(p))),
    Case("softmax_ce", "softmax_ce", (("y", "simplex"), ("z", "real")), ("z",), "sample",
         lambda y, z: -_rowsum(y * _log_softmax(z))),
    Case("softmax_ce_smooth", "softmax_ce_smooth", (("y", "simplex"), ("z", "real")), ("z",), "sample",
         # torch's definition: the targets mixed with the uniform distribution
         lambda y, z, smoothing: -_rowsum((y * (1 - smoothing) + smoothing / z.shape[1]) * _log_softmax(z)),
         params={"smoothing": 0.15}),
    Case("sparse_softmax_ce", "sparse_softmax_ce", (("y", "index"), ("z", "real")), ("z",), "sample",
         lambda y, z: _lse(z) - np.take_along_axis(z, y[:, None], axis=1),
         shapes={"y": (N,)}),
    Case("kl_div", "kl_div", (("p", "simplex"), ("q", "unit")), ("q",), "sample",
         lambda p, q: _rowsum(p * np.log(p / q))),
    Case("gaussian_nll", "gaussian_nll", (("y", "real"), ("mu", "real"), ("var", "positive")),
         ("mu", "var"), "element",
         lambda y, mu, var: np.broadcast_to(0.5 * (np.log(var) + (y - mu) ** 2 / var), (N, C))),
    Case("gaussian_nll[var (N,1)]", "gaussian_nll", (("y", "real"), ("mu", "real"), ("var", "positive")),
         ("mu", "var"), "element",
         lambda y, mu, var: np.broadcast_to(0.5 * (np.log(var) + (y - mu) ** 2 / var), (N, C)),
         shapes={"var": (N, 1)}),
    Case("triplet", "triplet", (("anchor", "real"), ("positive", "real"), ("negative", "real")),
         ("anchor", "positive", "negative"), "sample",
         lambda anchor, positive, negative, margin: _relu(_triplet_gap(anchor, positive, negative, margin)),
         params={"margin": 0.3},
         kinks=lambda anchor, positive, negative, margin: [_triplet_gap(anchor, positive, negative, margin)]),
    Case("contrastive", "contrastive", (("y", "binary"), ("d", "nonnegative")), ("d",), "element",
         lambda y, d, margin: (1 - y) * d ** 2 + y * _relu(margin - d) ** 2,
         params={"margin": 1.2},
         kinks=lambda y, d, margin: [margin - d]),
    Case("dice", "dice", (("y", "binary"), ("p", "unit")), ("p",), "batch",
         lambda y, p, smooth: np.reshape(1 - (2 * np.sum(y * p) + smooth) / (np.sum(y) + np.sum(p) + smooth),
                                         (1, 1)),
         params={"smooth": 0.5}),
    Case("binary_focal", "binary_focal", (("y", "binary"), ("p", "unit")), ("p",), "element",
         _binary_focal, params={"gamma": 1.5, "alpha": 0.3}),
    Case("categorical_focal", "categorical_focal", (("y", "simplex"), ("p", "unit")), ("p",), "sample",
         lambda y, p, gamma, alpha: -_rowsum(alpha * y * (1 - p) ** gamma * np.log(p)),
         params={"gamma": 1.5, "alpha": 0.3}),
)
CASES = {case.id: case for case in TABLE}
IDS = list(CASES)


def sample(rng: np.random.Generator, domain: str, shape: tuple) -> np.ndarray:
    if domain == "real":
        return rng.normal(size=shape)
    if domain == "simplex":      # rows of a Dirichlet(1, ..., 1): positive, summing to 1
        return rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    if domain == "unit":
        return rng.uniform(0.05, 0.95, size=shape)
    if domain == "binary":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    if domain == "index":        # class labels against C classes
        return rng.integers(0, C, size=shape, dtype=np.int64)
    if domain == "positive":
        return rng.uniform(0.5, 2.0, size=shape)
    if domain == "nonnegative":
        return rng.uniform(0.1, 2.0, size=shape)
    raise AssertionError(f"no sampler for domain {domain!r}")


def make_inputs(case: Case, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Arguments in their domains, every kink argument >= KINK_GAP from 0 and taking both signs
    (so that both branches of each relu are exercised)."""
    for _ in range(1000):
        args = {a: sample(rng, d, case.shape(a)) for a, d in case.arguments}
        kinks = case.kinks(**args, **case.params)
        if all(np.all(np.abs(k) > KINK_GAP) and (k > 0).any() and (k < 0).any() for k in kinks):
            return args
    raise AssertionError(f"could not sample inputs for {case.id} away from its kinks")


def dtype_of(domain: str, floats: str = "float64") -> str:
    return "int64" if domain == "index" else floats


def tensors(case: Case, fw, args: dict, floats: str = "float64") -> dict:
    return {a: fw.tensor(args[a], dtype_of(d, floats)) for a, d in case.arguments}


def several(x, k: int, what: str) -> tuple:
    """The per-target results as a tuple: one target gives a bare array, several a tuple."""
    if k == 1:
        assert not isinstance(x, (tuple, list)), f"{what}: a single target must give one array"
        return (x,)
    assert isinstance(x, tuple) and len(x) == k, f"{what}: expected a tuple of {k}, got {type(x)}"
    return x


def blocks_of(h, k: int, what: str) -> tuple[tuple, ...]:
    if k == 1:
        assert not isinstance(h, (tuple, list)), f"{what}: a single target must give one array"
        return ((h,),)
    assert isinstance(h, tuple) and len(h) == k and all(isinstance(r, tuple) and len(r) == k for r in h), \
        f"{what}: expected a {k}x{k} tuple of tuples"
    return h


def v_argument(vs: tuple):
    return vs[0] if len(vs) == 1 else tuple(vs)


# ---------------------------------------------------------------------------------------------
# The dense Hessian that hessian() describes, in the flattened targets' coordinates
# ---------------------------------------------------------------------------------------------

def _element_index(shape: tuple, elements: tuple) -> np.ndarray:
    """For every element of the broadcast inputs, the flat index of the target entry it uses."""
    return np.broadcast_to(np.arange(int(np.prod(shape))).reshape(shape), elements).ravel()


def dense_hessian(case: Case, blocks, shapes: list[tuple]) -> np.ndarray:
    """The full Hessian matrix over the concatenated, flattened targets.

    element: [i][j] holds d2l/dt_i dt_j per element collected to t_i's shape. Where t_i is broadcast
             (var (N, 1)), its per-element values come from [j][i] by symmetry.
    sample:  (N, d_i, d_j) blocks on the diagonal of a block-diagonal matrix.
    batch:   the whole matrix, t.shape + t.shape.
    """
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    H = np.zeros((offsets[-1], offsets[-1]))
    k = len(shapes)
    for i in range(k):
        for j in range(k):
            b = np.asarray(blocks[i][j], dtype=np.float64)
            rows, cols = slice(offsets[i], offsets[i + 1]), slice(offsets[j], offsets[j + 1])
            if case.kind == "batch":
                H[rows, cols] = b.reshape(sizes[i], sizes[j])
            elif case.kind == "sample":
                n = shapes[i][0]
                di, dj = sizes[i] // n, sizes[j] // n
                block = np.zeros((sizes[i], sizes[j]))
                b = b.reshape(n, di, dj)
                for s in range(n):
                    block[s * di:(s + 1) * di, s * dj:(s + 1) * dj] = b[s]
                H[rows, cols] = block
            else:
                elements = (N, C)
                ii, jj = _element_index(shapes[i], elements), _element_index(shapes[j], elements)
                if shapes[i] == elements:
                    values = b.ravel()
                elif shapes[j] == elements:
                    values = np.asarray(blocks[j][i], dtype=np.float64).ravel()
                else:
                    assert shapes[i] == shapes[j], "two differently broadcast targets: not covered here"
                    ii, jj, values = np.arange(sizes[i]), np.arange(sizes[j]), b.ravel()
                block = np.zeros((sizes[i], sizes[j]))
                block[ii, jj] = values
                H[rows, cols] = block
    return H


def apply_blocks(case: Case, blocks, vs: tuple, shapes: list[tuple]) -> tuple:
    """(H v)_i = sum_j block[i][j] applied to v_j, in each layout's own terms."""
    out = []
    for i, si in enumerate(shapes):
        total = np.zeros(si)
        for j, sj in enumerate(shapes):
            b, v = np.asarray(blocks[i][j], dtype=np.float64), np.asarray(vs[j], dtype=np.float64)
            if case.kind == "sample":
                n = si[0]
                total += np.einsum("nij,nj->ni", b.reshape(n, -1, v[0].size), v.reshape(n, -1)).reshape(si)
            elif case.kind == "batch":
                total += np.tensordot(b, v, axes=v.ndim)
            elif si == sj:        # one entry of t_i per entry of t_j: the collected values apply as they are
                total += b * v
            else:                 # per-element values from the full-shape side, summed down to t_i's shape
                per_element = b if si == (N, C) else np.asarray(blocks[j][i], dtype=np.float64)
                assert per_element.shape == (N, C), "two differently broadcast targets: not covered here"
                product = per_element * v
                axes = tuple(a for a, n in enumerate(si) if n == 1)
                total += product.sum(axis=axes, keepdims=True) if axes else product
        out.append(total)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# The table: signature and independent values
# ---------------------------------------------------------------------------------------------

def test_table_covers_the_catalog_with_test_gradients():
    """Acceptance 7: a new catalog loss must join one of the two tables."""
    ours = {case.name for case in TABLE}
    assert ours <= set(catalog.names()), ours - set(catalog.names())
    assert set(ELEMENTWISE_CASES) | ours == set(catalog.names()), \
        f"untested catalog losses: {sorted(set(catalog.names()) - set(ELEMENTWISE_CASES) - ours)}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cid", IDS)
def test_signature(cid, backend, build):
    case = CASES[cid]
    mod = build(case.name, backend)
    assert tuple(mod.ARGUMENTS) == case.names
    assert tuple(mod.TARGETS) == case.targets
    assert set(mod.PARAMETERS) == set(case.params)
    assert losscomp.compile(case.name).derivation.elementwise == (case.kind == "element")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cid", IDS)
def test_loss_matches_numpy_formula(cid, backend, build, fw, rng):
    """values gives one value per sample (or element, or one for the batch); loss is their mean."""
    case = CASES[cid]
    mod = build(case.name, backend)
    args = make_inputs(case, rng)
    t = tensors(case, fw, args)
    expected = case.reference(**args, **case.params)
    elements = fw.numpy(mod.values(*t.values(), **case.params))
    assert elements.shape == expected.shape, f"{cid}/{backend}: values shape {elements.shape}"
    assert_close(elements, expected, rtol=EXACT, what=f"{cid}/{backend} values vs NumPy")
    value = fw.numpy(mod.loss(*t.values(), **case.params))
    assert value.shape == ()
    assert_close(value, np.mean(expected), rtol=EXACT, what=f"{cid}/{backend} loss vs NumPy")


# ---------------------------------------------------------------------------------------------
# 1. grad against central differences and autodiff of the emitted loss
# ---------------------------------------------------------------------------------------------

def _replace(case: Case, t: dict, target: str, value) -> list:
    return [value if a == target else t[a] for a in case.names]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cid", IDS)
def test_grad_matches_finite_differences_of_loss(cid, backend, build, fw, rng):
    case = CASES[cid]
    mod = build(case.name, backend)
    args = make_inputs(case, rng)
    t = tensors(case, fw, args)
    what = f"{cid}/{backend}"
    grads = several(mod.grad(*t.values(), **case.params), len(case.targets), f"{what} grad")
    value, vg = mod.value_and_grad(*t.values(), **case.params)
    vg = several(vg, len(case.targets), f"{what} value_and_grad")
    assert_close(fw.numpy(value), fw.numpy(mod.loss(*t.values(), **case.params)), rtol=EXACT,
                 what=f"{what} value_and_grad[0]")
    for target, g, g2 in zip(case.targets, grads, vg):
        assert fw.dtype(g) == "float64"
        assert fw.shape(g) == case.shape(target), f"{what}: grad {target} shape {fw.shape(g)}"

        def loss_at(x, target=target):
            return fw.numpy(mod.loss(*_replace(case, t, target, fw.tensor(x)), **case.params))

        fd = central_jacobian(loss_at, args[target])
        assert_close(fw.numpy(g), fd, what=f"{what} grad {target} vs FD of loss")
        assert_close(fw.numpy(g2), fw.numpy(g), rtol=EXACT, what=f"{what} value_and_grad {target}")


def _autodiff(fw, mod, case: Case, args: dict):
    """(gradients, dense Hessian over the concatenated targets) of mod.loss, by the framework."""
    sizes = [int(np.prod(case.shape(a))) for a in case.targets]
    if fw.name == "torch":
        torch = fw.lib
        t = tensors(case, fw, args)
        leaves = [t[a].clone().requires_grad_(True) for a in case.targets]

        def f(*xs):
            values = dict(t, **dict(zip(case.targets, xs)))
            return mod.loss(*(values[a] for a in case.names), **case.params)

        grads = torch.autograd.grad(f(*leaves), leaves)
        hess = torch.autograd.functional.hessian(f, tuple(t[a] for a in case.targets))
        rows = [np.concatenate([hess[i][j].numpy().reshape(sizes[i], sizes[j]) for j in range(len(sizes))],
                               axis=1) for i in range(len(sizes))]
        return [g.numpy() for g in grads], np.concatenate(rows, axis=0)
    if fw.name == "jax":
        jax = fw.lib
        t = tensors(case, fw, args)
        leaves = tuple(t[a] for a in case.targets)

        def f(*xs):
            values = dict(t, **dict(zip(case.targets, xs)))
            return mod.loss(*(values[a] for a in case.names), **case.params)

        everything = tuple(range(len(leaves)))
        grads = jax.jit(jax.grad(f, argnums=everything))(*leaves)
        hess = jax.jit(jax.hessian(f, argnums=everything))(*leaves)
        rows = [np.concatenate([np.asarray(hess[i][j]).reshape(sizes[i], sizes[j]) for j in range(len(sizes))],
                               axis=1) for i in range(len(sizes))]
        return [np.asarray(g) for g in grads], np.concatenate(rows, axis=0)
    tf = fw.lib
    t = tensors(case, fw, args)
    variables = [tf.Variable(t[a]) for a in case.targets]
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            values = dict(t, **dict(zip(case.targets, variables)))
            value = mod.loss(*(values[a] for a in case.names), **case.params)
        grads = inner.gradient(value, variables)
    rows = []
    for i, g in enumerate(grads):
        row = []
        for j, x in enumerate(variables):
            jac = outer.jacobian(g, x, experimental_use_pfor=False)
            row.append(np.zeros((sizes[i], sizes[j])) if jac is None else jac.numpy().reshape(sizes[i], sizes[j]))
        rows.append(np.concatenate(row, axis=1))
    return [g.numpy() for g in grads], np.concatenate(rows, axis=0)


@pytest.mark.parametrize("backend", AUTODIFF_BACKENDS)
@pytest.mark.parametrize("cid", IDS)
def test_grad_and_hessian_match_autodiff(cid, backend, build, fw, rng):
    case = CASES[cid]
    mod = build(case.name, backend)
    args = make_inputs(case, rng)
    t = tensors(case, fw, args)
    what = f"{cid}/{backend}"
    auto_grads, auto_hess = _autodiff(fw, mod, case, args)
    grads = several(mod.grad(*t.values(), **case.params), len(case.targets), what)
    for target, g, expected in zip(case.targets, grads, auto_grads):
        assert_close(fw.numpy(g), expected, what=f"{what} grad {target} vs autodiff")
    blocks = blocks_of(mod.hessian(*t.values(), **case.params), len(case.targets), what)
    shapes = [case.shape(a) for a in case.targets]
    dense = dense_hessian(case, [[fw.numpy(b) for b in row] for row in blocks], shapes)
    assert_close(dense, auto_hess, what=f"{what} hessian vs autodiff Hessian of loss")


@pytest.mark.parametrize("backend", AUTODIFF_BACKENDS)
@pytest.mark.parametrize("cid", IDS)
def test_backend_agrees_with_numpy(cid, backend, build, fw, framework, rng):
    """The same numbers on every backend (NumPy has no autodiff: this ties it to the two that do)."""
    case = CASES[cid]
    args = make_inputs(case, rng)
    np_fw = framework("numpy")
    mod, reference = build(case.name, backend), build(case.name, "numpy")
    t, arrays = list(tensors(case, fw, args).values()), list(tensors(case, np_fw, args).values())
    vs = tuple(rng.normal(size=case.shape(a)) for a in case.targets)
    k = len(case.targets)
    for fn, extra, extra_np in (("loss", (), ()), ("grad", (), ()), ("hessian", (), ()),
                                ("hvp", (v_argument(tuple(fw.tensor(v) for v in vs)),), (v_argument(vs),))):
        got = getattr(mod, fn)(*t, *extra, **case.params)
        expected = getattr(reference, fn)(*arrays, *extra_np, **case.params)
        if fn == "hessian":
            got = [b for row in blocks_of(got, k, cid) for b in row]
            expected = [b for row in blocks_of(expected, k, cid) for b in row]
        elif fn != "loss":
            got, expected = several(got, k, cid), several(expected, k, cid)
        else:
            got, expected = [got], [expected]
        for g, e in zip(got, expected):
            assert_close(fw.numpy(g), e, rtol=EXACT, what=f"{cid}/{backend} {fn} vs numpy")


# ---------------------------------------------------------------------------------------------
# 2. hessian against central differences of grad; hvp against the blocks
# ---------------------------------------------------------------------------------------------

def _expected_block_shape(case: Case, i: str, j: str) -> tuple:
    si, sj = case.shape(i), case.shape(j)
    if case.kind == "element":
        return si
    if case.kind == "batch":
        return si + sj
    return (si[0], int(np.prod(si[1:])), int(np.prod(sj[1:])))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cid", IDS)
def test_hessian_matches_finite_differences_of_grad(cid, backend, build, fw, rng):
    case = CASES[cid]
    mod = build(case.name, backend)
    args = make_inputs(case, rng)
    t = tensors(case, fw, args)
    k = len(case.targets)
    what = f"{cid}/{backend}"
    shapes = [case.shape(a) for a in case.targets]
    sizes = [int(np.prod(s)) for s in shapes]

    columns = []
    for target in case.targets:
        def grad_at(x, target=target):
            gs = several(mod.grad(*_replace(case, t, target, fw.tensor(x)), **case.params), k, what)
            return np.concatenate([fw.numpy(g).ravel() for g in gs])

        columns.append(central_jacobian(grad_at, args[target]).reshape(sum(sizes), -1))
    fd = np.concatenate(columns, axis=1)

    blocks = blocks_of(mod.hessian(*t.values(), **case.params), k, f"{what} hessian")
    arrays = [[None] * k for _ in range(k)]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for i, ti in enumerate(case.targets):
        for j, tj in enumerate(case.targets):
            b = blocks[i][j]
            assert fw.dtype(b) == "float64"
            assert fw.shape(b) == _expected_block_shape(case, ti, tj), f"{what}: block [{ti}][{tj}] {fw.shape(b)}"
            arrays[i][j] = fw.numpy(b)
            if case.kind == "element":
                # collected to t_i's shape: each entry sums its row of the true Hessian block
                rows = fd[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]].sum(axis=1)
                assert_close(arrays[i][j].ravel(), rows, what=f"{what} block [{ti}][{tj}] vs FD row sums")
    assert_close(dense_hessian(case, arrays, shapes), fd, what=f"{what} hessian vs FD of grad")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cid", IDS)
def test_hvp_is_hessian_times_v(cid, backend, build, fw, rng):
    case = CASES[cid]
    mod = build(case.name, backend)
    args = make_inputs(case, rng)
    t = tensors(case, fw, args)
    k = len(case.targets)
    what = f"{cid}/{backend}"
    shapes = [case.shape(a) for a in case.targets]
    vs = tuple(rng.normal(size=s) for s in shapes)
    got = several(mod.hvp(*t.values(), v_argument(tuple(fw.tensor(v) for v in vs)), **case.params), k,
                  f"{what} hvp")
    blocks = blocks_of(mod.hessian(*t.values(), **case.params), k, what)
    arrays = [[fw.numpy(b) for b in row] for row in blocks]
    applied = apply_blocks(case, arrays, vs, shapes)
    dense = dense_hessian(case, arrays, shapes) @ np.concatenate([v.ravel() for v in vs])
    offsets = np.concatenate([[0], np.cumsum([int(np.prod(s)) for s in shapes])])
    for i, target in enumerate(case.targets):
        assert fw.dtype(got[i]) == "float64"
        assert fw.shape(got[i]) == shapes[i], f"{what}: hvp {target} shape"
        assert_close(fw.numpy(got[i]), applied[i], rtol=EXACT, what=f"{what} hvp {target} vs blocks applied to v")
        assert_close(fw.numpy(got[i]).ravel(), dense[offsets[i]:offsets[i + 1]], rtol=EXACT,
                     what=f"{what} hvp {target} vs dense Hessian @ v")


# ---------------------------------------------------------------------------------------------
# 8. float32 in, float32 out
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cid", IDS)
def test_float32_in_float32_out(cid, backend, build, fw, rng):
    case = CASES[cid]
    mod = build(case.name, backend)
    args = make_inputs(case, rng)
    k = len(case.targets)
    x32 = list(tensors(case, fw, args, "float32").values())
    x64 = list(tensors(case, fw, args, "float64").values())
    v32 = v_argument(tuple(fw.tensor(rng.normal(size=case.shape(a)), "float32") for a in case.targets))
    what = f"{cid}/{backend} float32"
    value, vg = mod.value_and_grad(*x32, **case.params)
    outputs = {"loss": [mod.loss(*x32, **case.params)], "value_and_grad[0]": [value],
               "grad": list(several(mod.grad(*x32, **case.params), k, what)),
               "value_and_grad[1]": list(several(vg, k, what)),
               "hvp": list(several(mod.hvp(*x32, v32, **case.params), k, what)),
               "hessian": [b for row in blocks_of(mod.hessian(*x32, **case.params), k, what) for b in row]}
    dtypes = {key: sorted({fw.dtype(x) for x in xs}) for key, xs in outputs.items()}
    assert dtypes == dict.fromkeys(outputs, ["float32"]), f"{what}: float32 inputs gave {dtypes}"
    # ... and they are the float64 results, rounded.
    reference = {"loss": [mod.loss(*x64, **case.params)],
                 "grad": list(several(mod.grad(*x64, **case.params), k, what)),
                 "hessian": [b for row in blocks_of(mod.hessian(*x64, **case.params), k, what) for b in row]}
    for key, expected in reference.items():
        for got, exp in zip(outputs[key], expected):
            assert_close(fw.numpy(got), fw.numpy(exp), rtol=1e-4, atol=1e-6, what=f"{what} {key}")


# ---------------------------------------------------------------------------------------------
# 3. The implementations a user would otherwise call, values and gradients
# ---------------------------------------------------------------------------------------------

def ours(backend: str, framework, build, name: str, args: list, params: dict, floats=None):
    """(loss, grads) of the catalog loss `name` on `backend`, as NumPy."""
    fw = framework(backend)
    mod = build(name, backend)
    floats = floats or ["float64"] * len(args)
    t = [fw.tensor(a, d) for a, d in zip(args, floats)]
    grads = mod.grad(*t, **params)
    grads = grads if isinstance(grads, tuple) else (grads,)
    return fw.numpy(mod.loss(*t, **params)), [fw.numpy(g) for g in grads]


def torch_reference(fn, args: list, wrt: list[int]):
    """(value, grads) of a torch reference function by torch.autograd, float64."""
    torch = pytest.importorskip("torch")
    t = [torch.tensor(a).requires_grad_(i in wrt) for i, a in enumerate(args)]
    value = fn(*t)
    grads = torch.autograd.grad(value, [t[i] for i in wrt])
    return value.detach().numpy(), [g.numpy() for g in grads]


def keras_reference(loss_object, y, p):
    """(value, grad wrt p) of a keras.losses object (built with dtype='float64'), by tf.GradientTape."""
    tf = pytest.importorskip("tensorflow")
    y, p = tf.constant(y, dtype=tf.float64), tf.Variable(tf.constant(p, dtype=tf.float64))
    with tf.GradientTape() as tape:
        value = loss_object(y, p)
    return value.numpy(), tape.gradient(value, p).numpy()


def _normalized_probabilities(rng, shape):
    """Rows summing to 1 with every entry in [0.01, 0.99]: Keras's renormalization p / sum(p) is the
    identity there (to rounding) and its clipping to [1e-7, 1 - 1e-7] does not bite."""
    while True:
        p = rng.dirichlet(np.full(shape[1], 3.0), size=shape[0])
        if p.min() > 0.01 and p.max() < 0.99:
            return p


def _logits_and_targets(rng):
    return rng.normal(size=(N, C)) * 2, rng.dirichlet(np.ones(C), size=N)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_ce_matches_torch_cross_entropy_with_probabilities(backend, framework, build, rng):
    F = pytest.importorskip("torch.nn.functional")
    z, y = _logits_and_targets(rng)
    ref_value, (ref_grad,) = torch_reference(lambda y_, z_: F.cross_entropy(z_, y_), [y, z], [1])
    value, (g,) = ours(backend, framework, build, "softmax_ce", [y, z], {})
    assert_close(value, ref_value, rtol=EXACT, what=f"softmax_ce/{backend} vs F.cross_entropy")
    assert_close(g, ref_grad, rtol=EXACT, what=f"softmax_ce/{backend} grad vs autograd of F.cross_entropy")


@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_ce_smooth_matches_torch_label_smoothing(backend, framework, build, rng):
    """torch mixes the targets with the uniform distribution, y (1 - s) + s / C, as the catalog does;
    with one-hot targets the same number comes from class indices."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    s = 0.1
    z, y = _logits_and_targets(rng)
    labels = rng.integers(0, C, size=N)
    onehot = np.eye(C)[labels]
    for kind, targets, torch_targets in (("probabilities", y, torch.tensor(y)),
                                         ("class indices", onehot, torch.tensor(labels))):
        ref_value, (ref_grad,) = torch_reference(
            lambda z_: F.cross_entropy(z_, torch_targets, label_smoothing=s), [z], [0])
        value, (g,) = ours(backend, framework, build, "softmax_ce_smooth", [targets, z], {"smoothing": s})
        assert_close(value, ref_value, rtol=EXACT, what=f"softmax_ce_smooth/{backend} vs torch ({kind})")
        assert_close(g, ref_grad, rtol=EXACT, what=f"softmax_ce_smooth/{backend} grad vs torch ({kind})")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_softmax_ce_matches_torch_class_indices(backend, framework, build, rng):
    """Acceptance 4: int64 labels in NumPy and torch, int32 and int64 in TensorFlow and JAX."""
    torch = pytest.importorskip("torch")
    z = rng.normal(size=(N, C)) * 2
    labels = rng.integers(0, C, size=N)
    ref_value, (ref_grad,) = torch_reference(
        lambda z_: torch.nn.functional.cross_entropy(z_, torch.tensor(labels, dtype=torch.int64)), [z], [0])
    fw = framework(backend)
    mod = build("sparse_softmax_ce", backend)
    for label_dtype in (("int32", "int64") if backend in ("tensorflow", "jax") else ("int64",)):
        y = fw.tensor(labels, label_dtype)
        assert fw.dtype(y) == label_dtype
        what = f"sparse_softmax_ce/{backend} {label_dtype} labels"
        zt = fw.tensor(z)
        assert_close(fw.numpy(mod.loss(y, zt)), ref_value, rtol=EXACT, what=f"{what}: loss vs torch")
        assert_close(fw.numpy(mod.grad(y, zt)), ref_grad, rtol=EXACT, what=f"{what}: grad vs torch")
        # the Hessian of the same loss with one-hot probability targets
        dense = build("softmax_ce", backend).hessian(fw.tensor(np.eye(C)[labels]), zt)
        assert_close(fw.numpy(mod.hessian(y, zt)), fw.numpy(dense), rtol=EXACT, what=f"{what}: hessian")
        assert fw.dtype(mod.grad(y, fw.tensor(z, "float32"))) == "float32"


@pytest.mark.parametrize("backend", BACKENDS)
def test_kl_div_matches_torch_batchmean(backend, framework, build, rng):
    F = pytest.importorskip("torch.nn.functional")
    p = rng.dirichlet(np.ones(C), size=N)
    q = rng.uniform(0.05, 0.95, size=(N, C))
    ref_value, (ref_grad,) = torch_reference(
        lambda p_, q_: F.kl_div(q_.log(), p_, reduction="batchmean"), [p, q], [1])
    value, (g,) = ours(backend, framework, build, "kl_div", [p, q], {})
    assert_close(value, ref_value, rtol=EXACT, what=f"kl_div/{backend} vs F.kl_div")
    assert_close(g, ref_grad, rtol=EXACT, what=f"kl_div/{backend} grad vs autograd of F.kl_div")


@pytest.mark.parametrize("var_shape", [(N, 1), (N, C)], ids=["var (N,1)", "var (N,D)"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gaussian_nll_matches_torch(backend, var_shape, framework, build, rng):
    """full=False (no log(2 pi) / 2), eps far below every variance; acceptance 4: a (N, 1) variance
    gets a (N, 1) gradient, summed over the features it broadcasts against."""
    F = pytest.importorskip("torch.nn.functional")
    y, mu = rng.normal(size=(N, C)), rng.normal(size=(N, C))
    var = rng.uniform(0.5, 2.0, size=var_shape)
    ref_value, (ref_mu, ref_var) = torch_reference(
        lambda y_, mu_, var_: F.gaussian_nll_loss(mu_, y_, var_, full=False, eps=1e-12, reduction="mean"),
        [y, mu, var], [1, 2])
    value, (g_mu, g_var) = ours(backend, framework, build, "gaussian_nll", [y, mu, var], {})
    assert g_mu.shape == (N, C) and g_var.shape == var_shape
    what = f"gaussian_nll/{backend} var {var_shape}"
    assert_close(value, ref_value, rtol=EXACT, what=f"{what}: loss vs F.gaussian_nll_loss")
    assert_close(g_mu, ref_mu, rtol=EXACT, what=f"{what}: grad mu vs torch")
    assert_close(g_var, ref_var, rtol=EXACT, what=f"{what}: grad var vs torch")


@pytest.mark.parametrize("backend", BACKENDS)
def test_triplet_matches_numpy_formula_and_gradient(backend, framework, build, rng):
    """relu(|a - p|^2 - |a - n|^2 + margin) per sample; where it is active its gradients are
    2 (n - p), -2 (a - p), 2 (a - n), over N for the mean."""
    case = CASES["triplet"]
    args = make_inputs(case, rng)
    a, p, n = args["anchor"], args["positive"], args["negative"]
    margin = case.params["margin"]
    gap = _triplet_gap(a, p, n, margin)
    active = (gap > 0).astype(np.float64)
    expected_value = np.mean(_relu(gap))
    expected = [2 * (n - p) * active / N, -2 * (a - p) * active / N, 2 * (a - n) * active / N]
    value, grads = ours(backend, framework, build, "triplet", [a, p, n], {"margin": margin})
    assert_close(value, expected_value, rtol=EXACT, what=f"triplet/{backend} loss")
    for target, g, e in zip(case.targets, grads, expected):
        assert_close(g, e, rtol=EXACT, what=f"triplet/{backend} grad {target}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_categorical_ce_and_focal_match_keras(backend, framework, build, rng):
    """keras.losses.CategoricalCrossentropy / CategoricalFocalCrossentropy divide p by its row sum and
    clip it to [1e-7, 1 - 1e-7]. At rows that sum to 1 with entries in [0.01, 0.99] neither changes a
    value, so values agree to rounding. Gradients do differ: Keras's is the gradient of L(p / sum(p)),
    which at sum(p) = 1 is g - sum(p * g) per sample (the component along the simplex's normal
    removed), with g our gradient. That projection of ours must equal Keras's. Both agree to rounding
    (EXACT; the differences seen are ~4e-16 relative): float64 throughout, no clipping in play."""
    keras = pytest.importorskip("keras")
    y = rng.dirichlet(np.ones(C), size=N)
    p = _normalized_probabilities(rng, (N, C))
    gamma, alpha = 1.5, 0.3
    for name, params, loss_object in (
            ("categorical_ce", {}, keras.losses.CategoricalCrossentropy(dtype="float64")),
            ("categorical_focal", {"gamma": gamma, "alpha": alpha},
             keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=gamma, dtype="float64"))):
        ref_value, ref_grad = keras_reference(loss_object, y, p)
        value, (g,) = ours(backend, framework, build, name, [y, p], params)
        projected = g - np.sum(p * g, axis=1, keepdims=True)
        assert_close(value, ref_value, rtol=EXACT, what=f"{name}/{backend} vs Keras")
        assert_close(projected, ref_grad, rtol=EXACT, what=f"{name}/{backend} projected grad vs Keras")


@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_focal_matches_keras(backend, framework, build, rng):
    """keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True) weights class 1 by alpha and
    class 0 by 1 - alpha, as the catalog does, and averages over the last axis and then the batch (the
    mean over all elements). Its clipping to [1e-7, 1 - 1e-7] does not bite on (0.05, 0.95), so
    values and gradients agree to rounding (EXACT)."""
    keras = pytest.importorskip("keras")
    case = CASES["binary_focal"]
    args = make_inputs(case, rng)
    loss_object = keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, dtype="float64",
                                                       **case.params)
    ref_value, ref_grad = keras_reference(loss_object, args["y"], args["p"])
    value, (g,) = ours(backend, framework, build, "binary_focal", [args["y"], args["p"]], case.params)
    assert_close(value, ref_value, rtol=EXACT, what=f"binary_focal/{backend} vs Keras")
    assert_close(g, ref_grad, rtol=EXACT, what=f"binary_focal/{backend} grad vs Keras")


@pytest.mark.parametrize("backend", BACKENDS)
def test_dice_matches_keras_whole_batch(backend, framework, build, rng):
    """keras.losses.Dice (axis=None) flattens the whole batch, as axis=all does, and has no smoothing
    but adds epsilon = 1e-7 to the denominator: 1 - 2I / (S + eps), S = sum(y) + sum(p). With smooth=0
    ours is 1 - 2I / S, below Keras's by 2I eps / (S (S + eps)) <= eps / S (2I <= S for binary y and p
    in (0, 1)), so the values are compared to that bound; the gradients, through 1/S and 1/S^2 terms,
    agree to relative ~2 eps / S (~1e-8 here)."""
    keras = pytest.importorskip("keras")
    y = rng.integers(0, 2, size=(N, C)).astype(np.float64)
    p = rng.uniform(0.05, 0.95, size=(N, C))
    S = y.sum() + p.sum()
    eps = keras.backend.epsilon()
    ref_value, ref_grad = keras_reference(keras.losses.Dice(dtype="float64"), y, p)
    value, (g,) = ours(backend, framework, build, "dice", [y, p], {"smooth": 0.0})
    assert 0 <= ref_value - value <= eps / S * (1 + 1e-6), f"dice/{backend}: {value} vs Keras {ref_value}"
    assert_close(g, ref_grad, rtol=10 * eps / S, what=f"dice/{backend} grad vs Keras")
    # and with the smoothing the catalog adds, against the NumPy formula
    value, _ = ours(backend, framework, build, "dice", [y, p], {"smooth": 1.0})
    assert_close(value, 1 - (2 * np.sum(y * p) + 1) / (S + 1), rtol=EXACT, what=f"dice/{backend} smooth=1")


@pytest.mark.parametrize("backend", BACKENDS)
def test_contrastive_matches_numpy_gradient(backend, framework, build, rng):
    """(1 - y) d^2 + y relu(margin - d)^2: gradient 2 (1 - y) d - 2 y relu(margin - d), over N*D."""
    case = CASES["contrastive"]
    args = make_inputs(case, rng)
    y, d, margin = args["y"], args["d"], case.params["margin"]
    value, (g,) = ours(backend, framework, build, "contrastive", [y, d], case.params)
    assert_close(value, np.mean(case.reference(y, d, margin)), rtol=EXACT, what=f"contrastive/{backend} loss")
    assert_close(g, (2 * (1 - y) * d - 2 * y * _relu(margin - d)) / y.size, rtol=EXACT,
                 what=f"contrastive/{backend} grad")


# ---------------------------------------------------------------------------------------------
# 5. softmax_ce: the derivation as printed, the Hessian's structure, one logsumexp per sample
# ---------------------------------------------------------------------------------------------

_z, _y = sympy.symbols("z y")
_softmax, _sum = sympy.Function("softmax"), sympy.Function("sum")
_PRINTED = {"softmax": _softmax, "sum": _sum, "logsumexp": sympy.Function("logsumexp"), "y": _y, "z": _z}


def _parse_printed(text: str) -> sympy.Expr:
    """A printed expression of `losscomp derive` (our own output, a fixed vocabulary) as SymPy."""
    from sympy.parsing.sympy_parser import parse_expr
    assert re.fullmatch(r"[\w\s()*+\-/^.]+", text), text
    return parse_expr(text.replace("^", "**"), local_dict=dict(_PRINTED))


def test_softmax_ce_derivation_is_printed_in_closed_form(capsys):
    """gradient softmax(z)*sum(y) - y; Hessian sum(y)*(diag(p) - p p^T) with p = softmax(z), printed
    as diag(a) - (u) (w)^T with a = sum(y) p and u w = sum(y) p p."""
    from losscomp import cli

    lines = losscomp.compile("softmax_ce").describe()
    assert cli.main(["derive", "softmax_ce"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.strip() for line in printed] == [line.strip() for line in lines]
    text = {line.split("=")[0].split()[0]: line.split("=", 1)[1].strip() for line in lines[1:]}
    p = _softmax(_z)

    gradient = _parse_printed(text["gradient"])
    assert sympy.simplify(gradient - (p * _sum(_y) - _y)) == 0, text["gradient"]

    hessian = re.fullmatch(r"diag\((.+)\) - \((.+)\) \((.+)\)\^T", text["Hessian"])
    assert hessian, f"not of the form diag(a) - (u) (w)^T: {text['Hessian']}"
    a, u, w = (_parse_printed(part) for part in hessian.groups())
    assert sympy.simplify(a - _sum(_y) * p) == 0, f"diagonal {a}"
    cu, cw = sympy.simplify(u / p), sympy.simplify(w / p)          # u = cu p, w = cw p
    assert not cu.has(_softmax) and not cw.has(_softmax), f"outer product ({u}) ({w})^T is not along p"
    assert sympy.simplify(cu * cw - _sum(_y)) == 0, f"outer product ({u}) ({w})^T is not sum(y) p p^T"


@pytest.mark.parametrize("scaled", [False, True], ids=["simplex y", "unnormalized y"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_softmax_ce_hessian_is_diag_minus_outer(backend, scaled, build, fw, rng):
    """hessian = sum(y) (diag(p) - p p^T) / N per sample. Rows of y scaled away from sum 1 (outside the
    simplex domain, but the formula holds for any y) make the sum(y) factor visible."""
    y = rng.dirichlet(np.ones(C), size=N)
    if scaled:
        y *= rng.uniform(0.3, 3.0, size=(N, 1))
    z = rng.normal(size=(N, C)) * 2
    p = np.exp(_log_softmax(z))
    expected = y.sum(axis=1)[:, None, None] * (np.einsum("ni,ij->nij", p, np.eye(C)) - np.einsum("ni,nj->nij", p, p)) / N
    got = fw.numpy(build("softmax_ce", backend).hessian(fw.tensor(y), fw.tensor(z)))
    assert_close(got, expected, rtol=EXACT, what=f"softmax_ce/{backend} hessian vs sum(y) (diag(p) - p p^T) / N")


def _functions(source: str) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}


def _calls(node: ast.AST) -> list[str]:
    return [n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]


_LOOPS = (ast.For, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@pytest.mark.parametrize("backend", BACKENDS)
def test_emitted_grad_computes_logsumexp_once_per_sample(backend):
    """One `_logsumexp(` call in grad (and in value_and_grad and hvp), none inside a loop, none through
    another module function; and `_logsumexp` itself is vectorized (no Python loop)."""
    source = losscomp.compile("softmax_ce").emit(backend)
    functions = _functions(source)
    assert not any(isinstance(n, _LOOPS) for n in ast.walk(functions["_logsumexp"])), "_logsumexp loops"

    def reaches_logsumexp(name: str, seen=()) -> bool:
        if name == "_logsumexp":
            return True
        if name not in functions or name in seen:
            return False
        return any(reaches_logsumexp(c, seen + (name,)) for c in _calls(functions[name]))

    for fn in ("grad", "value_and_grad", "hvp"):
        body = functions[fn]
        calls = _calls(body)
        assert calls.count("_logsumexp") == 1, f"{backend} {fn}: {calls.count('_logsumexp')} _logsumexp calls"
        assert ast.get_source_segment(source, body).count("_logsumexp(") == 1
        for loop in (n for n in ast.walk(body) if isinstance(n, _LOOPS)):
            assert not any(reaches_logsumexp(c) for c in _calls(loop)), f"{backend} {fn}: logsumexp in a loop"
        others = [c for c in calls if c != "_logsumexp" and reaches_logsumexp(c)]
        assert not others, f"{backend} {fn}: logsumexp again through {others}"


# ---------------------------------------------------------------------------------------------
# 6. softmax_ce 10^3 x 100: dense blocks against torch.func.hessian of the per-sample loss
# ---------------------------------------------------------------------------------------------

# torch.func.hessian's forward mode loads torch's jvp decompositions, which call the deprecated
# torch.jit.script (torch 2.13): third-party noise, not ours.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_softmax_ce_hessian_1000_by_100_matches_torch_func_hessian(build):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    n, c = 1000, 100
    y = torch.tensor(rng.dirichlet(np.ones(c), size=n))
    z = torch.tensor(rng.normal(size=(n, c)) * 2)

    def per_sample(y_row, z_row):
        return -(y_row * torch.log_softmax(z_row, dim=-1)).sum()

    expected = torch.func.vmap(torch.func.hessian(per_sample, argnums=1))(y, z) / n   # the mean's 1/N
    got = build("softmax_ce", "torch").hessian(y, z)
    assert tuple(got.shape) == (n, c, c) and got.dtype == torch.float64
    assert_close(got.numpy(), expected.numpy(), rtol=EXACT, what="softmax_ce 1000 x 100 hessian vs torch.func")


# ---------------------------------------------------------------------------------------------
# examples/softmax_ce/: the generated modules, current
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_examples_are_current(backend, tmp_path, capsys, fw, build, rng):
    """`losscomp compile softmax_ce --backend B -o examples/softmax_ce/softmax_ce_B.py` gives the committed file
    byte for byte (regenerate them as examples/softmax_ce/README.md says); the file works on its own."""
    from losscomp import cli

    committed = EXAMPLES / f"softmax_ce_{backend}.py"
    fresh = tmp_path / f"{backend}.py"
    assert cli.main(["compile", "softmax_ce", "--backend", backend, "-o", str(fresh)]) == 0
    capsys.readouterr()
    assert fresh.read_bytes() == committed.read_bytes(), \
        f"{committed.relative_to(REPO)} is stale: regenerate it (see examples/softmax_ce/README.md)"
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(committed.read_text()))
                if isinstance(node, ast.Import) for alias in node.names}
    assert imported <= {backend, "math"}
    # Loaded under a name of its own (the file names shadow the frameworks on sys.path).
    spec = importlib.util.spec_from_file_location(f"softmax_ce_example_{backend}", committed)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    z, y = _logits_and_targets(rng)
    assert_close(fw.numpy(module.grad(fw.tensor(y), fw.tensor(z))),
                 fw.numpy(build("softmax_ce", backend).grad(fw.tensor(y), fw.tensor(z))), rtol=0, atol=0,
                 what=f"example {backend} grad")
