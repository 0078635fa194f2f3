"""The emitted framework classes in use: torch.compile, the autograd.Function and nn.Module, tf.function
with XLA, tf.custom_gradient, and the Keras loss in model.compile / fit / save / load."""

from __future__ import annotations

import numpy as np
import pytest

import losscomp

torch = pytest.importorskip("torch")


def _inputs(loss, rng, n=8, d=5):
    out = []
    for a in loss.definition.arguments:
        if a.domain == "index":
            out.append(rng.integers(0, d, size=(n,)))
        elif a.domain == "simplex":
            out.append(rng.dirichlet(np.ones(d), size=n))
        elif a.domain == "unit":
            out.append(rng.uniform(0.1, 0.9, size=(n, d)))
        elif a.domain == "binary":
            out.append(rng.integers(0, 2, size=(n, d)).astype(np.float64))
        elif a.domain == "positive":
            out.append(rng.uniform(0.5, 2.0, size=(n, 1)))
        else:
            out.append(rng.normal(size=(n, d)))
    return out


def _pairs(a, b):
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    return list(zip(a, b))


@pytest.mark.parametrize("name", ["huber", "softmax_ce", "triplet"])
def test_torch_compile_matches_eager(name):
    loss = losscomp.compile(name)
    mod = loss.build("torch")
    args = [torch.tensor(x) for x in _inputs(loss, np.random.default_rng(0))]
    compiled = torch.compile(mod.value_and_grad)
    value, grads = compiled(*args)
    value_eager, grads_eager = mod.value_and_grad(*args)
    torch.testing.assert_close(value, value_eager, rtol=1e-12, atol=1e-15)
    for got, expected in _pairs(grads, grads_eager):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)


def test_autograd_function_and_module_under_torch_compile():
    loss = losscomp.compile("pinball", params={"tau": 0.9})
    mod = loss.build("torch")
    rng = np.random.default_rng(1)
    y = torch.tensor(rng.normal(size=(64,)))
    p = torch.tensor(rng.normal(size=(64,)), requires_grad=True)
    module = mod.PinballLoss(tau=0.9)
    step = torch.compile(lambda y, p: module(p, y))  # PyTorch's order: input, target
    step(y, p).backward()
    torch.testing.assert_close(p.grad, mod.grad(y, p.detach(), tau=0.9), rtol=1e-12, atol=1e-15)


def test_module_parameters_change_between_calls():
    mod = losscomp.compile("huber").build("torch")
    module = mod.HuberLoss(delta=1.0)
    y, p = torch.tensor([0.0, 0.0]), torch.tensor([3.0, 0.5])
    first = module(p, y)
    module.delta = 2.0
    assert float(module(p, y)) != float(first)
    assert float(module(p, y)) == pytest.approx(float(mod.loss(y, p, delta=2.0)))


tf = pytest.importorskip("tensorflow")


@pytest.mark.parametrize("name", ["huber", "softmax_ce", "sparse_softmax_ce", "dice", "gaussian_nll"])
def test_tf_function_jit_matches_eager(name):
    loss = losscomp.compile(name)
    mod = loss.build("tensorflow")
    args = [tf.constant(x) for x in _inputs(loss, np.random.default_rng(2))]
    value, grads = tf.function(mod.value_and_grad, jit_compile=True)(*args)
    value_eager, grads_eager = mod.value_and_grad(*args)
    np.testing.assert_allclose(value, value_eager, rtol=1e-12)
    for got, expected in _pairs(grads, grads_eager):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    v = tuple(args[mod.ARGUMENTS.index(t)] for t in mod.TARGETS)
    v = v[0] if len(v) == 1 else v
    for got, expected in _pairs(tf.function(mod.hvp, jit_compile=True)(*args, v), mod.hvp(*args, v)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_custom_gradient_is_the_symbolic_gradient():
    mod = losscomp.compile("bce_logits").build("tensorflow")
    rng = np.random.default_rng(3)
    y = tf.constant(rng.integers(0, 2, size=(16, 3)).astype(np.float64))
    z = tf.constant(rng.normal(size=(16, 3)))
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = mod.loss_with_gradient(y, z)
    np.testing.assert_allclose(tape.gradient(value, z), mod.grad(y, z), rtol=1e-12)
    np.testing.assert_allclose(value, mod.loss(y, z), rtol=1e-12)


def test_keras_loss_trains_saves_and_loads(tmp_path):
    """The seed article's use: model.compile(loss=...) with MSE plus the underestimation penalty."""
    keras = tf.keras
    mod = losscomp.compile("mse_underestimation", params={"weight": 1.0}).build("tensorflow")
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], dtype=np.float32))[:, None]
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=mod.MseUnderestimationLoss(weight=1.0))
    history = model.fit(x, y, epochs=30, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    # the Keras loss equals the module's loss (mean over samples of the per-sample mean)
    prediction = model.predict(x, verbose=0)
    expected = float(mod.loss(tf.constant(y, tf.float64), tf.constant(prediction, tf.float64)))
    got = float(mod.MseUnderestimationLoss(weight=1.0)(y, prediction))
    assert got == pytest.approx(expected, rel=1e-5)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert isinstance(restored.loss, mod.MseUnderestimationLoss)
    assert restored.loss.get_config()["weight"] == 1.0
    np.testing.assert_allclose(restored.predict(x, verbose=0), prediction, rtol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "torch", "tensorflow", "jax"])
def test_reduction_none_has_pytorch_shapes(backend):
    """reduction='none' drops the axes a per-sample reduction kept, as torch's cross_entropy does."""
    rng = np.random.default_rng(5)
    y, z = rng.dirichlet(np.ones(4), size=6), rng.normal(size=(6, 4))
    expected = torch.nn.functional.cross_entropy(torch.tensor(z), torch.tensor(y), reduction="none").numpy()
    mod = losscomp.compile("softmax_ce", reduction="none").build(backend)
    convert = {"numpy": np.asarray, "torch": torch.tensor, "tensorflow": tf.constant,
               "jax": lambda x: pytest.importorskip("jax.numpy").asarray(x)}[backend]
    got = np.asarray(mod.loss(convert(y), convert(z)))
    assert got.shape == (6,)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.asarray(losscomp.compile("dice", reduction="none").build(backend).loss(
        convert(y.round()), convert(rng.uniform(0.1, 0.9, size=(6, 4))))).shape == ()
    assert np.asarray(losscomp.compile("huber", reduction="none").build(backend).loss(
        convert(y), convert(z))).shape == (6, 4)
