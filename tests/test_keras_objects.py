"""The generated Keras loss behaves as Keras' own losses do: rank matching of y_true and y_pred, casting,
sample_weight, the dtype policy, get_config / from_config, saving under a name that identifies the
formula, and losses of several tensors packed into y_pred for model.compile / fit. Each test compares
with the keras.losses class a user would otherwise use, or with the formula written in NumPy."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import losscomp
from losscomp.cli import main

tf = pytest.importorskip("tensorflow")
keras = tf.keras
ROOT = Path(__file__).resolve().parents[1]


def _module(source, **options):
    return losscomp.compile(source, **options).build("tensorflow")


def _regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5], "float32") + 0.3).astype("float32")  # shape (n,): a 1-D target
    return x, y


def _train(loss, x, y, epochs=6):
    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
    history = model.fit(x, y, epochs=epochs, batch_size=16, shuffle=False, verbose=0)
    return model, history.history["loss"]


# -- the rows ---------------------------------------------------------------------------------

def test_one_dimensional_target_trains_as_keras_mean_squared_error():
    """y of shape (N,) beside a Dense(1) output (N, 1): Keras squeezes or expands, it does not broadcast
    to (N, N) (training went 16.06 -> 15.66 instead of 13.75 -> 0.18)."""
    mod = _module("mse")
    x, y = _regression()
    _, expected = _train(keras.losses.MeanSquaredError(), x, y)
    _, got = _train(mod.MseLoss(), x, y)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got[-1] < 0.2 * got[0]


def test_integer_y_true_is_cast_to_the_prediction_dtype():
    mod = _module("mse")
    y = np.array([[1], [2], [3]])  # int64
    p = tf.constant([[1.5], [2.0], [2.0]], tf.float32)
    assert float(mod.loss(y, p)) == pytest.approx(np.mean([0.25, 0, 1]))
    assert float(mod.MseLoss()(y, p)) == pytest.approx(float(keras.losses.MeanSquaredError()(y, p)))


@pytest.mark.parametrize("shape", [(6,), (6, 1), (6, 4), (6, 3, 4)])
def test_huber_with_sample_weight_as_keras_huber(shape, rng):
    mod = _module("huber", params={"delta": 0.7})
    y = rng.normal(size=shape).astype("float32")
    p = (rng.normal(size=shape) * 2).astype("float32")
    w = rng.uniform(0, 2, size=shape[:-1] if len(shape) > 2 else shape[:1]).astype("float32")  # per position
    for reduction in ("sum_over_batch_size", "sum", "none"):
        ours = mod.HuberLoss(delta=0.7, reduction=reduction)(y, p, sample_weight=w)
        theirs = keras.losses.Huber(delta=0.7, reduction=reduction)(y, p, sample_weight=w)
        np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=1e-6)


def test_dtype_policy_and_float64():
    mod = _module("mse")
    y, p = np.array([[0.1], [0.2]]), np.array([[0.3], [0.7]])
    assert mod.MseLoss()(y, p).dtype == tf.float32  # Keras' floatx
    exact = mod.MseLoss(dtype="float64")(y, p)
    assert exact.dtype == tf.float64
    assert float(exact) == np.mean((y - p) ** 2)
    assert mod.MseLoss(dtype="float64").get_config()["dtype"] == "float64"


def test_get_config_round_trip():
    mod = _module("huber")
    loss = mod.HuberLoss(delta=2.5, reduction="sum", name="robust")
    again = mod.HuberLoss.from_config(loss.get_config())
    assert (again.delta, again.reduction, again.name) == (2.5, "sum", "robust")
    assert again.get_config() == loss.get_config()


def test_sparse_labels_as_keras_sparse_categorical_crossentropy(rng):
    mod = _module("sparse_softmax_ce")
    z = rng.normal(size=(8, 5)).astype("float32")
    for labels in (rng.integers(0, 5, size=(8,)), rng.integers(0, 5, size=(8, 1))):
        ours = mod.SparseSoftmaxCeLoss()(labels, z)
        theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, z)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)


# -- saving and loading ------------------------------------------------------------------------------

LOAD = textwrap.dedent("""
    import importlib.util, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import keras
    spec = importlib.util.spec_from_file_location("regenerated", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        model = keras.models.load_model(sys.argv[2])
    except Exception as error:
        print("ERROR", type(error).__name__, error)
        raise SystemExit(0)
    x = np.load(sys.argv[3])
    print("LOADED", type(model.loss).__name__, model.loss.FORMULA, repr(float(model.evaluate(x[:, :3], x[:, 3], verbose=0))))
""")


def _load_in_fresh_process(module_file, model_file, data_file):
    result = subprocess.run([sys.executable, "-c", LOAD, str(module_file), str(model_file), str(data_file)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def _regenerate(loss_class, directory: Path, capsys) -> Path:
    """Run the command the class names (REGENERATE) through the CLI, writing into `directory`."""
    words = shlex.split(loss_class.REGENERATE)
    assert words[:2] == ["losscomp", "compile"]
    out = words.index("-o")
    target = directory / words[out + 1]
    words[out + 1] = str(target)
    assert main(words[1:]) == 0
    capsys.readouterr()
    return target


def test_saved_model_loads_in_a_fresh_process_with_the_regenerated_module(tmp_path, capsys):
    mod = _module("mse")
    x, y = _regression()
    model, _ = _train(mod.MseLoss(), x, y, epochs=3)
    model_file = tmp_path / "model.keras"
    model.save(model_file)
    data_file = tmp_path / "data.npy"
    np.save(data_file, np.column_stack([x, y]))
    expected = float(model.evaluate(x, y, verbose=0))
    module_file = _regenerate(mod.MseLoss, tmp_path, capsys)
    line = _load_in_fresh_process(module_file, model_file, data_file)
    kind, name, formula, value = line.split(" ", 3)
    assert (kind, name, formula) == ("LOADED", "MseLoss", mod.MseLoss.FORMULA)
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_loading_after_another_formula_took_the_name_fails_clearly(tmp_path, capsys):
    """A model saved with formula A, then a different formula B of the same name: no silent reload."""
    a = _module("combined(y, y_pred) = mse(y, y_pred) + underestimation(y, y_pred)")
    x, y = _regression()
    model, _ = _train(a.CombinedLoss(), x, y, epochs=1)
    model_file = tmp_path / "model.keras"
    model.save(model_file)
    data_file = tmp_path / "data.npy"
    np.save(data_file, np.column_stack([x, y]))
    b = losscomp.compile("combined(y, y_pred) = mse(y, y_pred) + 0.2 * underestimation(y, y_pred)")
    b_file = tmp_path / "combined_b.py"
    b_file.write_text(b.emit("tensorflow"))
    line = _load_in_fresh_process(b_file, model_file, data_file)
    assert line.startswith("ERROR ValueError"), line
    assert f"is the formula {a.CombinedLoss.FORMULA}" in line
    assert "regenerate it with: losscomp compile" in line and "--name combined" in line


def test_the_formula_hash_sees_helpers_and_ignores_spelling():
    helper = "penalty(y, y_pred) = 2 * relu({})\ncombined(y, y_pred) = mse(y, y_pred) + penalty(y, y_pred)"
    a = _module(helper.format("y - y_pred")).CombinedLoss
    b = _module(helper.format("y_pred - y")).CombinedLoss
    assert a.FORMULA != b.FORMULA                     # one source line, different helpers
    spelled = _module("mse(y, y_pred) = (y   - y_pred)^2   # the same formula").MseLoss
    assert spelled.FORMULA == _module("mse").MseLoss.FORMULA


def test_a_combined_loss_regenerates_to_the_same_formula(tmp_path, capsys):
    """A loss combined in Python names a command that writes a module of the same formula."""
    combined = 0.7 * losscomp.compile("mse") + 0.3 * losscomp.compile("softmax_ce(y, z) = relu(z - y)")
    loss_class = combined.build("tensorflow").MsePlusSoftmaxCeLoss
    path = _regenerate(loss_class, tmp_path, capsys)
    text = path.read_text()
    assert f"FORMULA = {loss_class.FORMULA!r}" in text


def test_two_formulas_of_one_name_each_load_as_themselves(tmp_path):
    a = _module("combined(y, y_pred) = mse(y, y_pred) + underestimation(y, y_pred)")
    b = _module("combined(y, y_pred) = mse(y, y_pred) + 0.2 * underestimation(y, y_pred)")
    assert a.CombinedLoss.FORMULA != b.CombinedLoss.FORMULA
    x, y = _regression()
    for mod, name in ((a, "a.keras"), (b, "b.keras")):
        model, _ = _train(mod.CombinedLoss(), x, y, epochs=1)
        model.save(tmp_path / name)
    assert type(keras.models.load_model(tmp_path / "a.keras").loss) is a.CombinedLoss
    assert type(keras.models.load_model(tmp_path / "b.keras").loss) is b.CombinedLoss


# -- losses of several tensors: a packed y_pred --------------------------------------------------------

def test_gaussian_nll_with_a_variance_head_packed_into_y_pred(rng):
    """Two heads, the mean and a softplus variance, concatenated: compile / fit with the generated loss,
    whose value is torch.nn.GaussianNLLLoss's (without its clamp) on the same predictions."""
    mod = _module("gaussian_nll")
    assert mod.GaussianNllLoss.Y_TRUE == ("y",) and mod.GaussianNllLoss.Y_PRED == ("mu", "var")
    x = rng.normal(size=(256, 2)).astype("float32")
    y = (x[:, :1] * 2 + rng.normal(size=(256, 1)) * np.exp(x[:, 1:])).astype("float32")
    keras.utils.set_random_seed(3)
    inputs = keras.Input(shape=(2,))
    hidden = keras.layers.Dense(16, activation="tanh")(inputs)
    mean = keras.layers.Dense(1)(hidden)
    variance = keras.layers.Dense(1, activation="softplus")(hidden)
    model = keras.Model(inputs, keras.layers.Concatenate()([mean, variance]))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=mod.GaussianNllLoss())
    history = model.fit(x, y, epochs=15, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    packed = model.predict(x, verbose=0).astype("float64")
    torch = pytest.importorskip("torch")
    expected = torch.nn.GaussianNLLLoss(eps=1e-300)(torch.tensor(packed[:, :1]), torch.tensor(y, dtype=torch.float64),
                                                     torch.tensor(packed[:, 1:]))
    got = mod.GaussianNllLoss(dtype="float64")(y, packed)
    np.testing.assert_allclose(float(got), float(expected), rtol=1e-10)


def test_triplet_model_with_embeddings_packed_into_y_pred(rng):
    """The encyclopedia entry's triplet model, with the loss in model.compile instead of a Lambda layer:
    one shared embedding network, the three embeddings concatenated; y_true is not used."""
    mod = _module("triplet")
    assert mod.TripletLoss.Y_TRUE == () and mod.TripletLoss.Y_PRED == ("anchor", "positive", "negative")
    n, d = 128, 8
    anchor = rng.normal(size=(n, d)).astype("float32")
    positive = (anchor + 0.1 * rng.normal(size=(n, d))).astype("float32")
    negative = rng.normal(size=(n, d)).astype("float32")
    keras.utils.set_random_seed(5)
    embed = keras.Sequential([keras.Input(shape=(d,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(4)])
    inputs = [keras.Input(shape=(d,)) for _ in range(3)]
    model = keras.Model(inputs, keras.layers.Concatenate()([embed(i) for i in inputs]))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=mod.TripletLoss(margin=0.2))
    dummy = np.zeros((n,), "float32")
    history = model.fit([anchor, positive, negative], dummy, epochs=10, batch_size=32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    e = model.predict([anchor, positive, negative], verbose=0).astype("float64")
    a, p, q = e[:, :4], e[:, 4:8], e[:, 8:]
    expected = np.mean(np.maximum(((a - p) ** 2).sum(-1) - ((a - q) ** 2).sum(-1) + 0.2, 0))
    np.testing.assert_allclose(float(mod.TripletLoss(margin=0.2, dtype="float64")(dummy, e)), expected, rtol=1e-10)


def test_user_names_that_are_template_names(rng):
    """A truth named y_pred, a target named y_true and a parameter named tf: y_true still holds the truth."""
    mod = _module("weird(y_pred, y_true; tf = 2) = tf * (y_true - y_pred)^2 + relu(y_pred - y_true)")
    assert mod.WeirdLoss.Y_TRUE == ("y_pred",) and mod.WeirdLoss.Y_PRED == ("y_true",)
    truth, prediction = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    got = mod.WeirdLoss(tf=0.5, dtype="float64")(truth, prediction)
    expected = np.mean(0.5 * (prediction - truth) ** 2 + np.maximum(truth - prediction, 0))
    np.testing.assert_allclose(float(got), expected, rtol=1e-12)
