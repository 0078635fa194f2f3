"""The JAX backend beyond the shared suites: the emitted module under jax.jit, jax.vmap and jax.grad;
`jax.jit(jax.grad(loss))` against the emitted grad (issue 14, acceptance 2); loss_with_gradient
(custom_vjp) and loss_with_jvp (custom_jvp) use the symbolic derivatives; value checks on concrete
arrays only; float32 without x64 mode.

References: JAX's own autodiff of the emitted loss, the emitted NumPy module, closed forms, and
mpmath. Inputs come from the seeded tables of test_gradients (elementwise losses) and
test_reductions (the rest), which keep them away from kinks.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import losscomp
from conftest import jax_x64
from test_gradients import CASES as ELEMENTWISE
from test_gradients import assert_close
from test_gradients import make_inputs as elementwise_inputs
from test_reductions import CASES as REDUCING
from test_reductions import blocks_of, dense_hessian, several
from test_reductions import make_inputs as reducing_inputs

jax = pytest.importorskip("jax")
jnp = jax.numpy

AUTODIFF_RTOL = 1e-9   # the symbolic gradient against JAX's autodiff of the emitted loss, float64


@pytest.fixture
def x64():
    """JAX's x64 mode for one test: float64 arrays stay float64."""
    with jax_x64(jax):
        yield


def _table():
    """(id, catalog name, argument names, targets, params, inputs maker) for every catalog loss."""
    rows = []
    for name, case in ELEMENTWISE.items():
        rows.append((name, name, case.names, (case.target,), case.params,
                     lambda rng, case=case: elementwise_inputs(case, rng)))
    for cid, case in REDUCING.items():
        rows.append((cid, case.name, case.names, case.targets, case.params,
                     lambda rng, case=case: reducing_inputs(case, rng)))
    return rows


TABLE = {row[0]: row for row in _table()}


def _arrays(args: dict, names) -> list:
    """jax arrays of the inputs: labels as integers, the rest float64."""
    return [jnp.asarray(args[a]) if np.issubdtype(np.asarray(args[a]).dtype, np.integer)
            else jnp.asarray(args[a], dtype=jnp.float64) for a in names]


def _inputs(cid, rng, arrays: bool = True):
    """The case's inputs as NumPy arrays and (in x64 mode) as float64 jax arrays."""
    _, name, names, targets, params, make = TABLE[cid]
    args = make(rng)
    return name, names, targets, params, args, _arrays(args, names) if arrays else None


def test_table_covers_the_catalog():
    assert {row[1] for row in TABLE.values()} == set(losscomp.catalog.names())


# ---------------------------------------------------------------------------------------------
# Acceptance 2: jax.jit(jax.grad(loss)) equals the emitted grad
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", list(TABLE))
def test_jit_of_jax_grad_of_loss_equals_emitted_grad(cid, build, rng, x64):
    name, names, targets, params, _, arrays = _inputs(cid, rng)
    mod = build(name, "jax")
    argnums = tuple(names.index(t) for t in targets)
    auto = jax.jit(jax.grad(mod.loss, argnums=argnums))(*arrays, **params)
    ours = several(mod.grad(*arrays, **params), len(targets), cid)
    for target, a, g in zip(targets, auto, ours):
        assert g.dtype == jnp.float64 and g.shape == a.shape
        assert_close(np.asarray(g), np.asarray(a), rtol=AUTODIFF_RTOL, what=f"{cid} grad {target} vs jit(grad(loss))")


# ---------------------------------------------------------------------------------------------
# Every public function under jax.jit, and jax.vmap over a batch of problems
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", ["huber", "pinball", "bce_logits", "softmax_ce", "sparse_softmax_ce", "triplet",
                                 "gaussian_nll[var (N,1)]", "dice"])
def test_every_function_under_jit_equals_eager(cid, build, rng, x64):
    name, names, targets, params, _, arrays = _inputs(cid, rng)
    mod = build(name, "jax")
    vs = tuple(jnp.asarray(rng.normal(size=arrays[names.index(t)].shape)) for t in targets)
    v = vs[0] if len(vs) == 1 else vs
    weights = jnp.asarray(rng.uniform(0.5, 2.0, size=arrays[0].shape[:1]))
    calls = {"values": ((), {}), "loss": ((), {}), "grad": ((), {}), "value_and_grad": ((), {}),
             "hessian": ((), {}), "hvp": ((v,), {})}
    if mod.KIND != "whole_batch":   # weights per sample (a whole-batch loss has one value)
        calls.update({"loss ": ((), {"sample_weight": weights}), "grad ": ((), {"sample_weight": weights})})
    for fn, (extra, keywords) in calls.items():
        function = getattr(mod, fn.strip())
        eager = function(*arrays, *extra, **params, **keywords)
        traced = jax.jit(lambda *a, function=function, keywords=keywords: function(*a, **params, **keywords))(
            *arrays, *extra)
        for e, t in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(traced)):
            assert t.shape == e.shape and t.dtype == e.dtype
            assert_close(np.asarray(t), np.asarray(e), rtol=1e-12, what=f"{cid} {fn} under jit")
    if len(targets) == 1 and mod.KIND != "whole_batch":
        X = jnp.asarray(rng.normal(size=(arrays[0].shape[0], 3)))
        w = jnp.asarray(rng.normal(size=(3,) + arrays[names.index(targets[0])].shape[1:]) / 3)
        others = [a for n, a in zip(names, arrays) if n != targets[0]]
        eager = mod.newton_hessian(X, *others, w, **params)
        traced = jax.jit(lambda *a: mod.newton_hessian(*a, **params))(X, *others, w)
        assert_close(np.asarray(traced), np.asarray(eager), rtol=1e-12, what=f"{cid} newton_hessian under jit")


@pytest.mark.parametrize("cid", ["huber", "softmax_ce", "sparse_softmax_ce", "triplet"])
def test_vmap_over_a_batch_of_problems_equals_a_loop(cid, build, rng, x64):
    """jax.vmap maps loss, grad and hessian over a leading axis of independent problems (labels too)."""
    name, names, targets, params, _, _ = _inputs(cid, rng)
    mod = build(name, "jax")
    problems = [_inputs(cid, rng)[5] for _ in range(3)]
    stacked = [jnp.stack([p[i] for p in problems]) for i in range(len(names))]
    for fn in ("loss", "grad", "hessian"):
        function = getattr(mod, fn)
        mapped = jax.vmap(lambda *a, function=function: function(*a, **params))(*stacked)
        for b, problem in enumerate(problems):
            one = function(*problem, **params)
            for m, o in zip(jax.tree_util.tree_leaves(mapped), jax.tree_util.tree_leaves(one)):
                assert_close(np.asarray(m[b]), np.asarray(o), rtol=1e-12, what=f"{cid} vmap {fn}, problem {b}")


def test_jax_grad_by_a_parameter_through_the_emitted_loss(build, rng, x64):
    """A parameter is a traced 0-d array: d pinball / d tau = mean(y - y_pred) (both branches of the
    max have slope e in tau)."""
    mod = build("pinball", "jax")
    y, y_pred = (jnp.asarray(rng.normal(size=(20, 3))) for _ in range(2))
    d_tau = jax.jit(jax.grad(lambda tau: mod.loss(y, y_pred, tau=tau)))(0.3)
    assert_close(np.asarray(d_tau), np.mean(np.asarray(y - y_pred)), rtol=1e-12, what="d loss / d tau")


# ---------------------------------------------------------------------------------------------
# loss_with_gradient (custom_vjp) and loss_with_jvp (custom_jvp)
# ---------------------------------------------------------------------------------------------

def _fresh(name: str, reduction: str = "mean"):
    """A module of its own, whose functions a test may replace."""
    return losscomp.compile(name, reduction=reduction).build("jax")


@pytest.mark.parametrize("cid", ["pinball", "softmax_ce", "gaussian_nll[var (N,1)]", "triplet", "dice"])
def test_custom_rules_give_the_symbolic_gradient(cid, rng, x64, monkeypatch):
    """Both wrappers differentiate by grad(): with grad() replaced by 3 grad(), jax.grad of either gives
    3 times the gradient, under jax.jit too; their values are loss()."""
    name, names, targets, params, _, arrays = _inputs(cid, rng)
    mod = _fresh(name)
    argnums = tuple(names.index(t) for t in targets)
    expected = several(mod.grad(*arrays, **params), len(targets), cid)
    value = mod.loss(*arrays, **params)
    symbolic = mod.grad
    monkeypatch.setattr(mod, "grad", lambda *a, **k: jax.tree_util.tree_map(lambda g: 3 * g, symbolic(*a, **k)))
    for wrapper in ("loss_with_gradient", "loss_with_jvp"):
        function = getattr(mod, wrapper)
        for how, differentiate in (("eager", jax.value_and_grad(function, argnums=argnums)),
                                   ("jit", jax.jit(jax.value_and_grad(function, argnums=argnums)))):
            v, grads = differentiate(*arrays, **params)
            assert_close(np.asarray(v), np.asarray(value), rtol=1e-12, what=f"{cid} {wrapper} value ({how})")
            for target, g, e in zip(targets, grads, expected):
                assert_close(np.asarray(g), 3 * np.asarray(e), rtol=1e-12,
                             what=f"{cid} {wrapper} gradient {target} ({how})")


@pytest.mark.parametrize("cid", ["huber", "softmax_ce", "gaussian_nll", "triplet", "dice"])
def test_second_derivatives_of_loss_with_jvp_go_through_hvp(cid, rng, x64, monkeypatch):
    """jax.hessian, jax.jacfwd(jax.grad) and jax.jacrev(jax.grad) of loss_with_jvp equal the emitted
    Hessian (and JAX's autodiff of loss); with hvp() replaced by 2 hvp(), they double: the second
    derivative is the symbolic one."""
    case = REDUCING.get(cid)
    name, names, targets, params, _, arrays = _inputs(cid, rng)
    mod = _fresh(name)
    argnums = tuple(names.index(t) for t in targets)
    k = len(targets)
    shapes = [arrays[i].shape for i in argnums]
    sizes = [int(np.prod(s)) for s in shapes]

    def dense(h):   # JAX's nested Hessian blocks as one matrix over the flattened targets
        return np.concatenate([np.concatenate([np.asarray(h[i][j]).reshape(sizes[i], sizes[j]) for j in range(k)],
                                              axis=1) for i in range(k)], axis=0)

    def symbolic_dense():
        blocks = blocks_of(mod.hessian(*arrays, **params), k, cid)
        blocks = [[np.asarray(b) for b in row] for row in blocks]
        if case is None:   # an elementwise loss of test_gradients: one diagonal
            return np.diag(blocks[0][0].ravel())
        return dense_hessian(case, blocks, shapes)

    expected = symbolic_dense()
    second = {"jax.hessian": jax.hessian(mod.loss_with_jvp, argnums=argnums),
              "jacfwd(grad)": jax.jacfwd(jax.grad(mod.loss_with_jvp, argnums=argnums), argnums=argnums),
              "jacrev(grad)": jax.jacrev(jax.grad(mod.loss_with_jvp, argnums=argnums), argnums=argnums)}
    second = {how: jax.jit(function) for how, function in second.items()}   # one compile, not one per operation
    assert_close(dense(jax.jit(jax.hessian(mod.loss, argnums=argnums))(*arrays, **params)), expected,
                 rtol=AUTODIFF_RTOL, what=f"{cid} emitted hessian vs jax.hessian(loss)")
    for how, function in second.items():
        assert_close(dense(function(*arrays, **params)), expected, rtol=1e-10, what=f"{cid} {how}(loss_with_jvp)")
    symbolic = mod.hvp
    monkeypatch.setattr(mod, "hvp", lambda *a, **kw: jax.tree_util.tree_map(lambda x: 2 * x, symbolic(*a, **kw)))
    second = {how: jax.jit(function) for how, function in {   # new functions: jit would reuse its traces
        "jax.hessian": jax.hessian(mod.loss_with_jvp, argnums=argnums),
        "jacfwd(grad)": jax.jacfwd(jax.grad(mod.loss_with_jvp, argnums=argnums), argnums=argnums)}.items()}
    for how, function in second.items():
        assert_close(dense(function(*arrays, **params)), 2 * expected, rtol=1e-10,
                     what=f"{cid} {how}(loss_with_jvp) with hvp doubled")


def test_forward_mode_uses_grad_and_custom_vjp_has_none(rng, x64):
    """jax.jvp of loss_with_jvp is <grad, dt>; loss_with_gradient has no forward mode, as JAX's
    custom_vjp functions have none (JAX's TypeError), but its second derivative, forward mode over
    the backward grad(), is the Hessian."""
    mod = _fresh("log_cosh")
    y, y_pred, dt = (jnp.asarray(rng.normal(size=(6, 2))) for _ in range(3))
    value, tangent = jax.jvp(lambda p: mod.loss_with_jvp(y, p), (y_pred,), (dt,))
    assert_close(np.asarray(value), np.asarray(mod.loss(y, y_pred)), rtol=1e-12, what="jvp value")
    assert_close(np.asarray(tangent), np.sum(np.asarray(mod.grad(y, y_pred) * dt)), rtol=1e-12, what="jvp tangent")
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda p: mod.loss_with_gradient(y, p), (y_pred,), (dt,))
    hessian = jax.jit(jax.hessian(mod.loss_with_gradient, argnums=1))(y, y_pred)
    assert_close(np.asarray(hessian).reshape(12, 12), np.diag(np.asarray(mod.hessian(y, y_pred)).ravel()),
                 rtol=1e-12, what="jax.hessian(loss_with_gradient)")


@pytest.mark.parametrize("name", ["huber", "softmax_ce", "gaussian_nll"])
def test_reduction_none_wrappers_differentiate_weighted_values(name, rng, x64):
    """With reduction='none' the cotangent weights each loss value: jax.grad of sum(sin(values)) and
    jax.jvp of the values through either wrapper equal JAX's autodiff of the plain loss."""
    mod = _fresh(name, "none")
    names, targets = mod.ARGUMENTS, mod.TARGETS
    shape = (5, 4)
    args = {a: rng.uniform(0.5, 2.0, size=shape) if a == "var" else rng.normal(size=shape) for a in names}
    if name == "softmax_ce":
        args["y"] = rng.dirichlet(np.ones(4), size=5)
    arrays = [jnp.asarray(args[a]) for a in names]
    argnums = tuple(names.index(t) for t in targets)

    def summed(function):
        return lambda *a: jnp.sum(jnp.sin(function(*a)))

    expected = jax.jit(jax.grad(summed(mod.loss), argnums=argnums))(*arrays)
    for wrapper in (mod.loss_with_gradient, mod.loss_with_jvp):
        for g, e in zip(jax.jit(jax.grad(summed(wrapper), argnums=argnums))(*arrays), expected):
            assert_close(np.asarray(g), np.asarray(e), rtol=1e-12, what=f"{name} none: grad through {wrapper.__name__}")
    i = argnums[0]
    dt = jnp.asarray(rng.normal(size=shape))

    def along(function):
        return lambda x: function(*(x if j == i else a for j, a in enumerate(arrays)))

    _, ours = jax.jit(lambda x, t: jax.jvp(along(mod.loss_with_jvp), (x,), (t,)))(arrays[i], dt)
    _, auto = jax.jit(lambda x, t: jax.jvp(along(mod.loss), (x,), (t,)))(arrays[i], dt)
    assert ours.shape == auto.shape
    assert_close(np.asarray(ours), np.asarray(auto), rtol=1e-12, what=f"{name} none: jvp of the values")


@pytest.mark.parametrize("wrapper", ["loss_with_gradient", "loss_with_jvp"])
def test_a_derivative_by_a_non_target_is_refused(wrapper, rng, x64):
    """The symbolic derivatives are by the targets only: differentiating by y or by a parameter is a
    ValueError that says what to do, never a silent zero."""
    mod = _fresh("pinball")
    function = getattr(mod, wrapper)
    y, y_pred = (jnp.asarray(rng.normal(size=(4, 2))) for _ in range(2))
    with pytest.raises(ValueError, match="by y_pred only, not by y: differentiate loss"):
        jax.grad(function, argnums=0)(y, y_pred)
    with pytest.raises(ValueError, match="not by tau"):
        jax.grad(lambda tau: function(y, y_pred, tau=tau))(0.3)
    # differentiating by the target alone works, under jit too
    assert np.isfinite(np.asarray(jax.jit(jax.grad(function, argnums=1))(y, y_pred))).all()


def test_custom_vjp_cotangent_takes_the_target_dtype(rng, x64):
    """float64 y and float32 y_pred promote to float64 values; the cotangent of y_pred is float32, as
    JAX requires of a custom_vjp."""
    mod = _fresh("mse")
    y = jnp.asarray(rng.normal(size=(6, 2)), dtype=jnp.float64)
    y_pred = jnp.asarray(rng.normal(size=(6, 2)), dtype=jnp.float32)
    g = jax.grad(mod.loss_with_gradient, argnums=1)(y, y_pred)
    assert g.dtype == jnp.float32
    assert_close(np.asarray(g), np.asarray(mod.grad(y, y_pred)), rtol=1e-6, what="mixed-dtype cotangent")


def test_names_of_the_templates_never_shadow_the_loss_arguments(rng, x64):
    """Arguments and parameters named like the module's globals and the templates' locals."""
    source = ("f(jax, jnp, grad: positive; upstream = 0.5, residuals = 2) = "
              "upstream * (jax - jnp)^2 + residuals * grad * jnp^2")
    mod = losscomp.compile(source, wrt=["jnp", "grad"]).build("jax")
    arrays = [jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray(rng.normal(size=(4, 3))),
              jnp.asarray(rng.uniform(0.5, 1.5, size=(4, 3)))]
    expected = mod.grad(*arrays)
    for wrapper in (mod.loss_with_gradient, mod.loss_with_jvp):
        for g, e in zip(jax.jit(jax.grad(wrapper, argnums=(1, 2)))(*arrays), expected):
            assert_close(np.asarray(g), np.asarray(e), rtol=1e-12, what=f"{wrapper.__name__} with hostile names")
    hessian = jax.jit(jax.hessian(mod.loss_with_jvp, argnums=1))(*arrays)
    diagonal = np.asarray(mod.hessian(*arrays)[0][0])
    assert_close(np.asarray(hessian).reshape(12, 12), np.diag(diagonal.ravel()), rtol=1e-12, what="hessian")


# ---------------------------------------------------------------------------------------------
# Values are checked on concrete arrays only
# ---------------------------------------------------------------------------------------------

def test_validate_runs_eagerly_and_refuses_to_trace(build, x64):
    mod = build("bce", "jax")
    y, p = jnp.asarray([[0.0, 1.0]]), jnp.asarray([[0.2, 1.5]])
    with pytest.raises(ValueError, match=r"p\[0, 1\] = 1.5 is outside the domain 'unit'"):
        mod.loss(y, p, validate=True)
    with pytest.raises(ValueError, match="not known while JAX traces"):
        jax.jit(lambda y, p: mod.loss(y, p, validate=True))(y, p)
    with pytest.raises(ValueError, match="outside the domain 'unit'"):   # concrete inside a traced function
        jax.jit(lambda: mod.loss(y, p, validate=True))()
    assert np.isfinite(float(jax.jit(mod.loss)(y, jnp.asarray([[0.2, 0.5]]))))


def test_class_labels_are_range_checked_when_concrete(build, x64):
    """Concrete labels outside [0, C) are a ValueError; traced ones cannot be checked, and a label out
    of range gives a row of zeros (jax.nn.one_hot), as the module documents: the same values as an
    all-zero target row of the dense loss."""
    mod = build("sparse_softmax_ce", "jax")
    z = jnp.asarray([[0.5, -1.0, 2.0], [0.0, 1.0, -2.0]])
    with pytest.raises(ValueError, match="class label 3 is outside"):
        mod.loss(jnp.asarray([0, 3]), z)
    with pytest.raises(ValueError, match="class labels must be integers"):
        mod.loss(jnp.asarray([0.0, 1.5]), z)
    labels = jnp.asarray([0, 3])
    with pytest.raises(ValueError, match="class label 3 is outside"):   # concrete inside a traced function
        jax.jit(lambda z: mod.loss(labels, z))(z)
    traced = jax.jit(mod.values)(jnp.asarray([0, 3]), z)
    dense = build("softmax_ce", "jax").values(jnp.asarray([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), z)
    assert_close(np.asarray(traced), np.asarray(dense), rtol=1e-12, what="traced out-of-range label")


# ---------------------------------------------------------------------------------------------
# dtype without x64 mode; accuracy of softplus and sigmoid
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", ["huber", "bce_logits", "poisson_nll", "softmax_ce", "sparse_softmax_ce", "triplet"])
def test_float32_everywhere_without_x64(cid, build, framework, rng):
    """JAX's default mode: float64 NumPy inputs become float32, and every result is float32, close to
    the NumPy module's float64 numbers."""
    assert not jax.config.jax_enable_x64
    name, names, targets, params, args, _ = _inputs(cid, rng, arrays=False)
    mod, reference = build(name, "jax"), build(name, "numpy")
    numpy_args = [args[a] for a in names]
    for fn in ("loss", "grad", "hessian"):
        got = getattr(mod, fn)(*numpy_args, **params)
        expected = getattr(reference, fn)(*numpy_args, **params)
        for g, e in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
            assert g.dtype == jnp.float32, f"{cid} {fn}: {g.dtype}"
            assert_close(np.asarray(g), e, rtol=1e-4, atol=1e-6, what=f"{cid} {fn} float32")


def test_softplus_and_sigmoid_keep_their_digits_at_large_arguments(x64):
    """softplus(z) = logaddexp(z, 0) and its derivative sigmoid(z) against mpmath, |z| up to 700: no
    overflow, and a relative error of a few units of rounding where the values are tiny (exp(-700))."""
    mod = losscomp.compile("f(y, z) = softplus(z) + 0 * y", reduction="none").build("jax")
    z = np.array([-700.0, -100.0, -40.0, -1e-9, 0.0, 1e-9, 40.0, 100.0, 700.0])
    with mpmath.workdps(60):
        softplus = [float(mpmath.log1p(mpmath.exp(mpmath.mpf(v)))) for v in z]
        sigmoid = [float(1 / (1 + mpmath.exp(-mpmath.mpf(v)))) for v in z]
    y = jnp.zeros_like(jnp.asarray(z))
    values, grads = mod.value_and_grad(y, jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(values), softplus, rtol=4e-16, atol=0)
    np.testing.assert_allclose(np.asarray(grads), sigmoid, rtol=4e-16, atol=0)
    auto = jax.grad(lambda t: jnp.sum(mod.loss(y, t)))(jnp.asarray(z))
    np.testing.assert_allclose(np.asarray(auto), sigmoid, rtol=4e-16, atol=0)
