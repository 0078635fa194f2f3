"""Gradients and Hessians of every catalog loss, on every backend, against finite differences,
the frameworks' own autodiff, and independent NumPy formulas; plus dtypes, hvp, reductions,
broadcasting, and the two acceptance examples (the Keras seed article and the torch pinball).

Every input is drawn from a seeded generator inside each argument's domain and kept at least
`MARGIN` away from every kink, so that finite differences and autodiff are well defined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

import losscomp
from losscomp import catalog

BACKENDS = ("numpy", "torch", "tensorflow", "jax")
AUTODIFF_BACKENDS = ("torch", "tensorflow", "jax")
SHAPE = (7, 3)
MARGIN = 1e-3      # minimum distance of every input from a kink
RTOL = 1e-6        # the required agreement of derivatives (see assert_close)
FD_STEP = 1e-6     # central-difference step, scaled by max(1, |x|)


# ---------------------------------------------------------------------------------------------
# The catalog, restated independently: argument domains, the parameters each test passes (not the
# defaults, so that passing parameters is exercised), an elementwise NumPy reference, and the
# signed distances to the loss's kinks (each must change sign somewhere in the data).
# ---------------------------------------------------------------------------------------------

def _relu(x):
    return np.maximum(x, 0.0)


@dataclass(frozen=True)
class Case:
    name: str
    arguments: tuple[tuple[str, str], ...]                 # (name, domain); the target is the 2nd
    reference: Callable[..., np.ndarray]                   # (args..., **params) -> elementwise loss
    params: dict = field(default_factory=dict)
    margins: Callable[..., list] = lambda *args, **params: []  # signed distances to kinks

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.arguments)

    @property
    def target(self) -> str:
        return self.arguments[1][0]


def _e(y, t):
    return y - t


CASES = {c.name: c for c in (
    Case("mse", (("y", "real"), ("y_pred", "real")), lambda y, t: (y - t) ** 2),
    Case("mae", (("y", "real"), ("y_pred", "real")), lambda y, t: np.abs(y - t),
         margins=lambda y, t: [_e(y, t)]),
    Case("huber", (("y", "real"), ("y_pred", "real")),
         lambda y, t, delta: np.where(np.abs(y - t) <= delta, 0.5 * (y - t) ** 2,
                                      delta * (np.abs(y - t) - 0.5 * delta)),
         params={"delta": 0.8},
         margins=lambda y, t, delta: [_e(y, t), np.abs(_e(y, t)) - delta]),
    Case("pinball", (("y", "real"), ("y_pred", "real")),
         lambda y, t, tau: np.maximum(tau * (y - t), (tau - 1) * (y - t)),
         params={"tau": 0.8},
         margins=lambda y, t, tau: [_e(y, t)]),
    Case("log_cosh", (("y", "real"), ("y_pred", "real")), lambda y, t: np.log(np.cosh(t - y))),
    Case("tukey", (("y", "real"), ("y_pred", "real")),
         lambda y, t, c: np.where(np.abs(y - t) <= c, c ** 2 / 6 * (1 - (1 - ((y - t) / c) ** 2) ** 3),
                                  c ** 2 / 6),
         params={"c": 2.1},
         margins=lambda y, t, c: [np.abs(_e(y, t)) - c]),
    Case("cauchy", (("y", "real"), ("y_pred", "real")),
         lambda y, t, c: c ** 2 / 2 * np.log1p(((y - t) / c) ** 2), params={"c": 0.7}),
    Case("poisson_nll", (("y", "count"), ("log_rate", "real")), lambda y, r: np.exp(r) - y * r),
    Case("underestimation", (("y", "real"), ("y_pred", "real")), lambda y, t: 2 * _relu(y - t),
         margins=lambda y, t: [_e(y, t)]),
    Case("mse_underestimation", (("y", "real"), ("y_pred", "real")),
         lambda y, t, weight: (y - t) ** 2 + weight * 2 * _relu(y - t),
         params={"weight": 0.6},
         margins=lambda y, t, weight: [_e(y, t)]),
    Case("hinge", (("y", "sign"), ("y_pred", "real")), lambda y, t: _relu(1 - y * t),
         margins=lambda y, t: [1 - y * t]),
    Case("squared_hinge", (("y", "sign"), ("y_pred", "real")), lambda y, t: _relu(1 - y * t) ** 2,
         margins=lambda y, t: [1 - y * t]),
    Case("bce", (("y", "binary"), ("p", "unit")),
         lambda y, p: -(y * np.log(p) + (1 - y) * np.log(1 - p))),
    Case("bce_logits", (("y", "binary"), ("z", "real")),
         lambda y, z: y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)),
)}

LOSSES = list(CASES)
PARAMETRIZED = [name for name, case in CASES.items() if case.params]


def sample(rng: np.random.Generator, domain: str, shape) -> np.ndarray:
    if domain == "real":
        return rng.normal(size=shape)
    if domain == "count":
        return rng.poisson(3.0, size=shape).astype(np.float64)
    if domain == "sign":
        return rng.choice([-1.0, 1.0], size=shape)
    if domain == "binary":
        return rng.integers(0, 2, size=shape).astype(np.float64)
    if domain == "unit":
        return rng.uniform(0.02, 0.98, size=shape)
    raise AssertionError(f"no sampler for domain {domain!r}")


def _any_to(mask: np.ndarray, shape) -> np.ndarray:
    """Reduce a broadcast boolean mask to `shape` (True where any broadcast copy is True)."""
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and mask.shape[i] != 1)
    return mask.any(axis=axes, keepdims=True) if axes else mask


def make_inputs(case: Case, rng: np.random.Generator, shapes=None, fixed=None,
                cover: bool = True) -> dict[str, np.ndarray]:
    """Arguments of `case` in their domains, every element at least MARGIN from every kink.

    `shapes` maps argument -> shape (default SHAPE); `fixed` holds arguments not to resample.
    With `cover`, every kink's two sides both occur, so both branches of each `if` are tested.
    """
    shapes = shapes or {}
    fixed = fixed or {}
    args = {a: fixed[a] if a in fixed else sample(rng, d, shapes.get(a, SHAPE)) for a, d in case.arguments}
    for _ in range(1000):
        margins = [np.asarray(m) for m in case.margins(*args.values(), **case.params)]
        if not margins:
            return args
        near = np.zeros(np.broadcast_shapes(*(m.shape for m in margins)), dtype=bool)
        for m in margins:
            near |= np.abs(m) < MARGIN
        uncovered = cover and not all((m > 0).any() and (m < 0).any() for m in margins)
        if not near.any() and not uncovered:
            return args
        for a, d in case.arguments:
            if a in fixed:
                continue
            shape = np.shape(args[a])
            redo = np.ones(shape, dtype=bool) if uncovered else _any_to(near, shape)
            args[a] = np.where(redo, sample(rng, d, shape), args[a])
    raise AssertionError(f"could not sample inputs for {case.name} away from its kinks")


def with_target(case: Case, args: dict, value) -> list:
    return [value if a == case.target else args[a] for a in case.names]


# ---------------------------------------------------------------------------------------------
# Numerics
# ---------------------------------------------------------------------------------------------

def assert_close(actual, expected, rtol: float = RTOL, atol: float = 1e-12, what: str = "") -> None:
    """|actual - expected| <= rtol * (|expected| + max|expected|) + atol, elementwise.

    Relative per element where values are large, relative to the array's largest value where they
    are small (a derivative that is ~0 next to O(1) neighbours), and exact for all-zero references.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values {actual}"
    scale = np.max(np.abs(expected), initial=0.0)
    err = np.abs(actual - expected)
    tol = rtol * (np.abs(expected) + scale) + atol
    if not np.all(err <= tol):
        i = np.unravel_index(np.argmax(err - tol), err.shape)
        raise AssertionError(
            f"{what}: {np.sum(err > tol)} of {err.size} elements differ; worst at {i}: "
            f"got {actual[i]!r}, expected {expected[i]!r} (|diff| {err[i]:.3g} > tol {tol[i]:.3g})")


def central_jacobian(f: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """J[out..., in...] of f at x by float64 central differences, one input element at a time."""
    x = np.asarray(x, dtype=np.float64)
    columns = []
    for index in np.ndindex(x.shape):
        h = FD_STEP * max(1.0, abs(x[index]))
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        columns.append((np.asarray(f(up)) - np.asarray(f(down))) / (up[index] - down[index]))
    out_shape = np.shape(columns[0])
    return np.stack(columns, axis=-1).reshape(out_shape + x.shape)


def _module_class(mod, base: type) -> type:
    found = [v for k, v in vars(mod).items()
             if isinstance(v, type) and issubclass(v, base) and v is not base and k.endswith("Loss")]
    assert len(found) == 1, f"expected one {base.__name__} subclass named *Loss, found {found}"
    return found[0]


# ---------------------------------------------------------------------------------------------
# The table itself
# ---------------------------------------------------------------------------------------------

def test_cases_are_elementwise_catalog_losses():
    """test_reductions.py checks that this table and its own cover the whole catalog."""
    import losscomp
    elementwise = {n for n in catalog.names() if losscomp.compile(n).derivation.elementwise}
    assert set(CASES) <= elementwise


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_signature(name, backend, build):
    case = CASES[name]
    mod = build(name, backend)
    assert tuple(mod.ARGUMENTS) == case.names
    assert tuple(mod.TARGETS) == (case.target,)
    assert set(mod.PARAMETERS) == set(case.params)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_loss_matches_reference_formula(name, backend, build, fw, rng):
    """The emitted loss (mean) equals the mean of an independent NumPy formula."""
    case = CASES[name]
    args = make_inputs(case, rng)
    got = fw.numpy(build(name, backend).loss(*(fw.tensor(args[a]) for a in case.names), **case.params))
    assert got.shape == ()
    assert_close(got, np.mean(case.reference(*args.values(), **case.params)), rtol=1e-12,
                 what=f"{name}/{backend} loss")


# ---------------------------------------------------------------------------------------------
# 1-2. grad and hessian against central differences of the emitted loss and grad
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_grad_matches_finite_differences_of_loss(name, backend, build, fw, rng):
    case = CASES[name]
    mod = build(name, backend)
    args = make_inputs(case, rng)
    tensors = {a: fw.tensor(v) for a, v in args.items()}

    def loss_at(t):
        return fw.numpy(mod.loss(*with_target(case, tensors, fw.tensor(t)), **case.params))

    fd = central_jacobian(loss_at, args[case.target])
    g = mod.grad(*tensors.values(), **case.params)
    assert fw.dtype(g) == "float64"
    assert_close(fw.numpy(g), fd, what=f"{name}/{backend} grad vs FD of loss")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_hessian_matches_finite_differences_of_grad(name, backend, build, fw, rng):
    """The full Jacobian of grad is diagonal (elementwise loss), and its diagonal is hessian."""
    case = CASES[name]
    mod = build(name, backend)
    args = make_inputs(case, rng)
    tensors = {a: fw.tensor(v) for a, v in args.items()}

    def grad_at(t):
        return fw.numpy(mod.grad(*with_target(case, tensors, fw.tensor(t)), **case.params))

    n = int(np.prod(SHAPE))
    jacobian = central_jacobian(grad_at, args[case.target]).reshape(n, n)
    h = mod.hessian(*tensors.values(), **case.params)
    assert fw.dtype(h) == "float64"
    assert fw.shape(h) == SHAPE
    assert_close(np.diag(fw.numpy(h).ravel()), jacobian, what=f"{name}/{backend} hessian vs FD of grad")


# ---------------------------------------------------------------------------------------------
# 3. grad and hessian against the framework's own autodiff of the emitted loss
# ---------------------------------------------------------------------------------------------

def _autodiff(fw, mod, case: Case, args: dict):
    """(gradient, full Hessian reshaped (n, n)) of mod.loss by the target, by the framework."""
    n = int(np.prod(SHAPE))
    if fw.name == "torch":
        torch = fw.lib
        tensors = {a: fw.tensor(v) for a, v in args.items()}
        target = tensors[case.target].clone().requires_grad_(True)

        def f(t):
            return mod.loss(*with_target(case, tensors, t), **case.params)

        (g,) = torch.autograd.grad(f(target), target)
        hess = torch.autograd.functional.hessian(f, target.detach())
        return g.numpy(), hess.numpy().reshape(n, n)
    if fw.name == "jax":
        jax = fw.lib
        tensors = {a: fw.tensor(v) for a, v in args.items()}

        def f(t):
            return mod.loss(*with_target(case, tensors, t), **case.params)

        g = jax.jit(jax.grad(f))(tensors[case.target])          # compiled: one XLA program each, not
        hess = jax.jit(jax.hessian(f))(tensors[case.target])    # one per operation and transformation
        return np.asarray(g), np.asarray(hess).reshape(n, n)
    tf = fw.lib
    tensors = {a: fw.tensor(v) for a, v in args.items()}
    target = tf.Variable(tensors[case.target])
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            value = mod.loss(*with_target(case, tensors, target), **case.params)
        g = inner.gradient(value, target)
    hess = outer.jacobian(g, target, experimental_use_pfor=False)
    if hess is None:  # no path at all from the gradient back to the target: a zero Hessian
        hess = tf.zeros(SHAPE + SHAPE, dtype=tf.float64)
    return g.numpy(), hess.numpy().reshape(n, n)


@pytest.mark.parametrize("backend", AUTODIFF_BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_grad_and_hessian_match_autodiff(name, backend, build, fw, rng):
    case = CASES[name]
    mod = build(name, backend)
    args = make_inputs(case, rng)
    auto_grad, auto_hess = _autodiff(fw, mod, case, args)
    tensors = [fw.tensor(args[a]) for a in case.names]
    assert_close(fw.numpy(mod.grad(*tensors, **case.params)), auto_grad,
                 what=f"{name}/{backend} grad vs autodiff")
    assert_close(np.diag(fw.numpy(mod.hessian(*tensors, **case.params)).ravel()), auto_hess,
                 what=f"{name}/{backend} hessian vs autodiff")


@pytest.mark.parametrize("backend", AUTODIFF_BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_framework_wrappers_backpropagate_grad(name, backend, build, fw, rng):
    """torch: the <Name>Loss nn.Module (through its autograd.Function); TF: loss_with_gradient and
    the Keras <Name>Loss class; JAX: loss_with_gradient (custom_vjp) and loss_with_jvp (custom_jvp).
    Values equal loss(), gradients equal grad()."""
    case = CASES[name]
    mod = build(name, backend)
    args = make_inputs(case, rng)
    tensors = {a: fw.tensor(v) for a, v in args.items()}
    expected_value = fw.numpy(mod.loss(*tensors.values(), **case.params))
    expected_grad = fw.numpy(mod.grad(*tensors.values(), **case.params))
    if backend == "torch":
        torch = fw.lib
        module = _module_class(mod, torch.nn.Module)(**case.params)
        target = tensors[case.target].clone().requires_grad_(True)
        by_name = dict(zip(case.names, with_target(case, tensors, target)))
        value = module(*(by_name[a] for a in module.ORDER))  # forward takes PyTorch's order
        value.backward()
        got_value, got_grad = value.detach().numpy(), target.grad.numpy()
    elif backend == "jax":
        jax = fw.lib

        def wrapped(function):
            return lambda t: function(*with_target(case, tensors, t), **case.params)

        got_value, got_grad = jax.jit(jax.value_and_grad(wrapped(mod.loss_with_gradient)))(tensors[case.target])
        jvp_value, jvp_grad = jax.jit(jax.value_and_grad(wrapped(mod.loss_with_jvp)))(tensors[case.target])
        assert_close(jvp_value, expected_value, rtol=1e-12, what=f"{name}/{backend} loss_with_jvp value")
        assert_close(jvp_grad, expected_grad, rtol=1e-12, what=f"{name}/{backend} loss_with_jvp gradient")
    else:
        tf = fw.lib
        target = tf.Variable(tensors[case.target])
        with tf.GradientTape() as tape:
            value = mod.loss_with_gradient(*with_target(case, tensors, target), **case.params)
        got_value, got_grad = value.numpy(), tape.gradient(value, target).numpy()
        # Keras computes in its floatx (float32) unless the loss is given a dtype, as its own losses do.
        keras_loss = _module_class(mod, tf.keras.losses.Loss)(**case.params, dtype="float64")
        assert_close(keras_loss(*tensors.values()).numpy(), expected_value, rtol=1e-12,
                     what=f"{name}/{backend} Keras loss class")
    assert_close(got_value, expected_value, rtol=1e-12, what=f"{name}/{backend} wrapper value")
    assert_close(got_grad, expected_grad, rtol=1e-12, what=f"{name}/{backend} wrapper backward")


@pytest.mark.parametrize("backend", AUTODIFF_BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_backend_agrees_with_numpy_in_float64(name, backend, build, fw, rng):
    """Full float64 precision: every backend computes the same numbers as NumPy, to 1e-12.

    The parameters in CASES are not representable in float32 (0.8, 0.7, 2.1**2 / 6, ...), so a
    constant that passes through float32 on its way into a float64 result shows up here.
    """
    case = CASES[name]
    args = make_inputs(case, rng)
    v = rng.normal(size=SHAPE)
    reference, mod = build(name, "numpy"), build(name, backend)
    tensors = [fw.tensor(args[a]) for a in case.names]
    arrays = [args[a] for a in case.names]
    for fn, extra in (("loss", ()), ("grad", ()), ("hessian", ()), ("hvp", (v,))):
        got = getattr(mod, fn)(*tensors, *(fw.tensor(x) for x in extra), **case.params)
        expected = getattr(reference, fn)(*arrays, *extra, **case.params)
        assert_close(fw.numpy(got), expected, rtol=1e-12, what=f"{name}/{backend} {fn} vs numpy")


# ---------------------------------------------------------------------------------------------
# 4. dtype follows the inputs
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_float32_in_float32_out(name, backend, build, fw, rng):
    case = CASES[name]
    mod = build(name, backend)
    args = make_inputs(case, rng)
    x32 = [fw.tensor(args[a], "float32") for a in case.names]
    x64 = [fw.tensor(args[a], "float64") for a in case.names]
    v32 = fw.tensor(rng.normal(size=SHAPE), "float32")
    value, grad = mod.value_and_grad(*x32, **case.params)
    outputs = {"loss": mod.loss(*x32, **case.params), "grad": mod.grad(*x32, **case.params),
               "hessian": mod.hessian(*x32, **case.params), "hvp": mod.hvp(*x32, v32, **case.params),
               "value_and_grad[0]": value, "value_and_grad[1]": grad}
    dtypes = {k: fw.dtype(v) for k, v in outputs.items()}
    assert dtypes == dict.fromkeys(outputs, "float32"), f"{name}/{backend}: float32 inputs gave {dtypes}"
    # ... and the float32 results are the float64 ones, rounded.
    for key, fn in (("loss", mod.loss), ("grad", mod.grad), ("hessian", mod.hessian)):
        assert_close(fw.numpy(outputs[key]), fw.numpy(fn(*x64, **case.params)), rtol=1e-4, atol=1e-6,
                     what=f"{name}/{backend} float32 {key}")


# ---------------------------------------------------------------------------------------------
# 5. hvp = hessian * v
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_hvp_is_hessian_times_v(name, backend, build, fw, rng):
    case = CASES[name]
    mod = build(name, backend)
    args = make_inputs(case, rng)
    v = rng.normal(size=SHAPE)
    tensors = [fw.tensor(args[a]) for a in case.names]
    h = fw.numpy(mod.hessian(*tensors, **case.params))
    got = fw.numpy(mod.hvp(*tensors, fw.tensor(v), **case.params))
    assert_close(got, h * v, rtol=1e-12, what=f"{name}/{backend} hvp vs hessian * v")


# ---------------------------------------------------------------------------------------------
# 8. reductions: sum and none against mean, and none against the reference formula
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_reductions_are_consistent(name, backend, build, fw, rng):
    case = CASES[name]
    args = make_inputs(case, rng)
    tensors = [fw.tensor(args[a]) for a in case.names]
    n = int(np.prod(SHAPE))
    out = {}
    for reduction in ("mean", "sum", "none"):
        mod = build(name, backend, reduction)
        assert mod.REDUCTION == reduction
        value, grad = mod.value_and_grad(*tensors, **case.params)
        out[reduction] = {"loss": fw.numpy(mod.loss(*tensors, **case.params)),
                          "grad": fw.numpy(mod.grad(*tensors, **case.params)),
                          "hessian": fw.numpy(mod.hessian(*tensors, **case.params)),
                          "vg_loss": fw.numpy(value), "vg_grad": fw.numpy(grad)}
    elements = case.reference(*args.values(), **case.params)
    mean, total, none = out["mean"], out["sum"], out["none"]
    what = f"{name}/{backend}"
    # none: the elementwise values, shaped like the (broadcast) inputs
    assert_close(none["loss"], elements, rtol=1e-12, what=f"{what} none loss vs reference")
    assert_close(total["loss"], np.sum(none["loss"]), rtol=1e-12, what=f"{what} sum loss vs sum of none")
    assert_close(total["loss"], n * mean["loss"], rtol=1e-12, what=f"{what} sum loss vs n * mean")
    # derivatives: sum = n * mean; none differentiates the sum of its elements
    for key in ("grad", "hessian"):
        assert_close(total[key], n * mean[key], rtol=1e-12, what=f"{what} sum {key} vs n * mean")
        assert_close(none[key], total[key], rtol=1e-12, what=f"{what} none {key} vs sum")
    for reduction, r in out.items():
        assert_close(r["vg_loss"], r["loss"], rtol=1e-12, what=f"{what} {reduction} value_and_grad[0]")
        assert_close(r["vg_grad"], r["grad"], rtol=1e-12, what=f"{what} {reduction} value_and_grad[1]")


# ---------------------------------------------------------------------------------------------
# 9. broadcasting
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_broadcast_truth_against_target(name, backend, build, fw, rng):
    """y of shape (7, 1) with a (7, 3) target: the same as y repeated along the last axis."""
    case = CASES[name]
    mod = build(name, backend)
    y_name = case.names[0]
    args = make_inputs(case, rng, shapes={y_name: (SHAPE[0], 1)})
    small = [fw.tensor(args[a]) for a in case.names]
    full = [fw.tensor(np.broadcast_to(args[a], SHAPE)) for a in case.names]
    what = f"{name}/{backend} y {np.shape(args[y_name])} vs {case.target} {SHAPE}"
    for fn in ("loss", "grad", "hessian"):
        got = getattr(mod, fn)(*small, **case.params)
        expected = fw.numpy(getattr(mod, fn)(*full, **case.params))
        assert fw.shape(got) == expected.shape, f"{what}: {fn} shape"
        assert_close(fw.numpy(got), expected, rtol=1e-12, what=f"{what}: {fn}")
    none = build(name, backend, "none").loss(*small, **case.params)
    assert fw.shape(none) == SHAPE


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_broadcast_target_against_truth(name, backend, build, fw, rng):
    """A (7, 1) target against a (7, 3) y: grad and hessian are summed back to the target's shape."""
    case = CASES[name]
    mod = build(name, backend)
    args = make_inputs(case, rng, shapes={case.target: (SHAPE[0], 1)})
    small = [fw.tensor(args[a]) for a in case.names]
    full = [fw.tensor(np.broadcast_to(args[a], SHAPE)) for a in case.names]
    what = f"{name}/{backend} {case.target} {(SHAPE[0], 1)} vs y {SHAPE}"
    assert_close(fw.numpy(mod.loss(*small, **case.params)), fw.numpy(mod.loss(*full, **case.params)),
                 rtol=1e-12, what=f"{what}: loss")
    for fn in ("grad", "hessian"):
        got = getattr(mod, fn)(*small, **case.params)
        expected = fw.numpy(getattr(mod, fn)(*full, **case.params)).sum(axis=1, keepdims=True)
        assert fw.shape(got) == (SHAPE[0], 1), f"{what}: {fn} shape"
        assert_close(fw.numpy(got), expected, rtol=1e-12, what=f"{what}: {fn}")


# ---------------------------------------------------------------------------------------------
# Parameters and the Newton Hessian
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", PARAMETRIZED)
def test_compiled_params_become_defaults(name, backend, build, fw, rng):
    """compile(params=...) sets the defaults: calling without keywords equals passing them."""
    case = CASES[name]
    args = make_inputs(case, rng)
    tensors = [fw.tensor(args[a]) for a in case.names]
    with_defaults = build(name, backend, params=case.params)
    assert with_defaults.PARAMETERS == case.params
    plain = build(name, backend)
    for fn in ("loss", "grad", "hessian"):
        assert_close(fw.numpy(getattr(with_defaults, fn)(*tensors)),
                     fw.numpy(getattr(plain, fn)(*tensors, **case.params)), rtol=1e-12,
                     what=f"{name}/{backend} {fn} with compiled defaults")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSSES)
def test_newton_hessian_matches_finite_differences(name, backend, build, fw, rng):
    """newton_hessian(X, y, w) is the Hessian in w of loss(y, X @ w): FD of X^T grad(y, X @ w)."""
    case = CASES[name]
    mod = build(name, backend)
    n, d = 9, 3
    X = rng.normal(size=(n, d)) / np.sqrt(d)
    w = rng.normal(size=d)
    if case.arguments[1][1] == "unit":   # keep the probabilities X @ w inside (0.02, 0.98)
        X, w = rng.uniform(0.1, 0.3, size=(n, d)), rng.uniform(0.1, 0.9, size=d)
    args = make_inputs(case, rng, shapes={case.names[0]: (n,)}, fixed={case.target: X @ w}, cover=False)
    y = fw.tensor(args[case.names[0]])

    def grad_w(w_):
        return X.T @ fw.numpy(mod.grad(y, fw.tensor(X @ w_), **case.params))

    fd = central_jacobian(grad_w, w)
    got = fw.numpy(mod.newton_hessian(fw.tensor(X), y, fw.tensor(w), **case.params))
    assert_close(got, fd, what=f"{name}/{backend} newton_hessian vs FD")


# ---------------------------------------------------------------------------------------------
# 6. The seed article: MSE plus a custom penalty, written as three definitions
# ---------------------------------------------------------------------------------------------

SEED_SOURCE = """
mse2(y, y_pred) = (y - y_pred)^2
penalty(y, y_pred) = if e < 0 then -2 * e else 0 where e = y - y_pred
combined(y, y_pred) = mse2(y, y_pred) + penalty(y, y_pred)
"""


def test_seed_article_combination_tensorflow(framework, rng):
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    compiled = losscomp.compile(SEED_SOURCE)
    assert compiled.name == "combined"
    mod = compiled.build("tensorflow")
    assert tuple(mod.ARGUMENTS) == ("y", "y_pred") and tuple(mod.TARGETS) == ("y_pred",)

    y_np = rng.normal(size=(32, 4))
    y_pred_np = rng.normal(size=(32, 4))
    y_pred_np = np.where(np.abs(y_np - y_pred_np) < MARGIN, y_pred_np + 0.1, y_pred_np)
    y_true = tf.constant(y_np, dtype=tf.float64)
    y_pred = tf.Variable(tf.constant(y_pred_np, dtype=tf.float64))

    def underestimation_penalty(y_true, y_pred):  # as in the article
        error = y_true - y_pred
        return tf.reduce_mean(tf.where(error < 0, -2 * error, tf.zeros_like(error)))

    def seed_loss(y_true, y_pred):
        return tf.reduce_mean(keras.losses.mean_squared_error(y_true, y_pred)) + \
            underestimation_penalty(y_true, y_pred)

    with tf.GradientTape(persistent=True) as tape:
        reference = seed_loss(y_true, y_pred)
        ours = mod.loss(y_true, y_pred)
    assert ours.dtype == tf.float64
    assert_close(ours.numpy(), reference.numpy(), rtol=1e-12, what="seed loss vs Keras MSE + penalty")
    grad = mod.grad(y_true, tf.convert_to_tensor(y_pred)).numpy()
    assert_close(grad, tape.gradient(reference, y_pred).numpy(), what="seed grad vs autodiff of reference")
    assert_close(grad, tape.gradient(ours, y_pred).numpy(), what="seed grad vs autodiff of loss")
    assert_close(mod.hessian(y_true, tf.convert_to_tensor(y_pred)).numpy(),
                 np.full(y_np.shape, 2.0 / y_np.size), rtol=1e-12, what="seed hessian = 2/n")
    # The same source on the other backends gives the same numbers.
    for backend in ("numpy", "torch"):
        fw = framework(backend)
        other = compiled.build(backend)
        args = fw.tensor(y_np), fw.tensor(y_pred_np)
        assert_close(fw.numpy(other.loss(*args)), reference.numpy(), rtol=1e-12, what=f"seed loss, {backend}")
        assert_close(fw.numpy(other.grad(*args)), grad, rtol=1e-12, what=f"seed grad, {backend}")


# ---------------------------------------------------------------------------------------------
# 7. The torch pinball acceptance test
# ---------------------------------------------------------------------------------------------

def test_torch_pinball_acceptance(build, rng):
    torch = pytest.importorskip("torch")
    tau = 0.9
    mod = build("pinball", "torch")
    y = torch.tensor(rng.normal(size=10**5), dtype=torch.float64)
    y_pred = torch.tensor(rng.normal(size=10**5), dtype=torch.float64)
    assert torch.all(y != y_pred)

    reference_input = y_pred.clone().requires_grad_(True)
    e = y - reference_input
    reference = torch.maximum(tau * e, (tau - 1) * e).mean()
    reference.backward()
    expected = reference_input.grad.numpy()

    assert_close(mod.loss(y, y_pred, tau=tau).numpy(), reference.detach().numpy(), rtol=1e-12,
                 what="pinball loss vs torch")
    assert_close(mod.grad(y, y_pred, tau=tau).numpy(), expected, what="pinball grad vs torch autograd")

    module_input = y_pred.clone().requires_grad_(True)
    value = mod.PinballLoss(tau=tau)(module_input, y)  # PyTorch's order: input, target
    value.backward()
    assert_close(value.detach().numpy(), reference.detach().numpy(), rtol=1e-12, what="PinballLoss value")
    assert_close(module_input.grad.numpy(), expected, what="PinballLoss backward vs torch autograd")
