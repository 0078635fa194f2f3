"""The verification library and `losscomp verify`: the 50-digit oracle, samplers, kinks, regions,
and the table of checks of emitted modules (which must fail for a module that is wrong)."""

from __future__ import annotations

import json
import math
import types

import mpmath
import numpy as np
import pytest
import sympy

import losscomp
from losscomp.cli import main
from losscomp.verify import emitted, evaluate, kinks, oracle, regions, sampling
from losscomp.verify import verify

PER_SAMPLE = "sce(y: onehot, z) = logsumexp(z) - sum(y * z)"


# -- the interpreter and the oracle ---------------------------------------------------------------

def test_float_and_mpmath_evaluations_agree_on_every_function():
    loss = losscomp.compile("f(x, y) = exp(x) + log1p(y^2) + sigmoid(x) + softplus(-x) + tanh(y) + erf(x) "
                            "+ relu(x - y) + clip(y, -1, 1) + max(x, y) + abs(x) + expm1(y / 4) + sqrt(1 + x^2)")
    model = evaluate.Model(loss.definition)
    x = {"x": np.array([-3.0, -0.5, 0.0, 0.25, 2.0]), "y": np.array([1.5, -2.0, 0.0, 0.25, -0.75])}
    value = loss.derivation.value
    fast = model.evaluate(value, x)
    with mpmath.workdps(50):
        exact = evaluate.to_float(model.evaluate(value, x, evaluate.MpKit()))
    np.testing.assert_allclose(fast, exact, rtol=1e-14)


def test_mpmath_knows_what_float64_cannot_hold():
    model = evaluate.Model(losscomp.compile("f(x) = exp(x)").definition)
    with mpmath.workdps(50):
        values = model.evaluate(sympy.exp(sympy.Symbol("x", real=True)), {"x": np.array([1.0, 1000.0])},
                                evaluate.MpKit())
    assert evaluate.representable(values).tolist() == [True, False]
    assert evaluate.to_float(values)[1] == math.inf


def test_reductions_keep_their_axes():
    loss = losscomp.compile(PER_SAMPLE)
    model = evaluate.Model(loss.definition)
    z = np.arange(12.0).reshape(3, 4) / 7
    y = np.eye(4)[[0, 2, 3]]
    got = model.evaluate(loss.derivation.value, {"y": y, "z": z})
    expected = np.log(np.exp(z).sum(axis=1, keepdims=True)) - (y * z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_oracle_gradient_matches_its_own_differences_off_the_kinks():
    loss = losscomp.compile("huber")
    sample = sampling.sample(loss, 200, seed=3)
    x = sample.inputs()
    o = oracle.Oracle(loss)
    g = evaluate.to_float(o.gradient(x, "y_pred"))
    fd = evaluate.to_float(o.differences(x, "y_pred"))
    off = ~kinks.at_kinks(loss, x)
    np.testing.assert_allclose(g[off], fd[off], rtol=1e-15, atol=1e-300)


def test_oracle_differences_of_a_per_sample_loss_match_the_emitted_gradient_and_hessian():
    loss = losscomp.compile(PER_SAMPLE, reduction="none")
    sample = sampling.sample(loss, 40, seed=1, edges=False)
    x = sample.inputs()
    module = loss.build("numpy")
    o = oracle.Oracle(loss)
    np.testing.assert_allclose(evaluate.to_float(o.gradient(x, "z")), module.grad(**x), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(evaluate.to_float(o.hessian(x, "z", "z")), module.hessian(**x), rtol=1e-10,
                               atol=1e-15)


# -- kinks and samples ----------------------------------------------------------------------------

def test_kink_points_lie_exactly_on_the_kinks():
    loss = losscomp.compile("huber", params={"delta": 1.5})
    points = kinks.kink_points(loss, np.random.default_rng(0))
    e = np.abs(points["y"] - points["y_pred"])
    on = kinks.at_kinks(loss, points)
    assert on.sum() >= 16
    assert set(np.round(e[on], 12)) <= {0.0, 1.5}
    assert not on[(np.abs(e - 1.5) > 1e-6) & (e > 1e-6)].any()  # the neighbours 2^-30 away are not kinks


def test_features_read_like_conditions():
    texts = [f.text for f in kinks.features(losscomp.compile("huber"))]
    assert texts[:2] == ["y", "y_pred"] and "abs(y - y_pred)" in texts


@pytest.mark.parametrize("source, unit", [("mse", "element"), (PER_SAMPLE, "sample"), ("dice", "batch")])
def test_samples_respect_domains_and_shapes(source, unit):
    loss = losscomp.compile(source)
    s = sampling.sample(loss, 400, seed=5)
    assert s.unit == unit
    x = s.inputs()
    for a in loss.definition.arguments:
        v = x[a.name]
        assert np.isfinite(v).all()
        if a.domain == "unit":
            assert ((v > 0) & (v < 1)).all()
        if a.domain == "binary":
            assert set(np.unique(v)) <= {0.0, 1.0}
        if a.domain == "onehot":
            assert (v.sum(axis=1) == 1).all() and set(np.unique(v)) <= {0.0, 1.0}
    shapes = {np.shape(v) for v in x.values()}
    assert len(shapes) == 1 and len(next(iter(shapes))) == 2
    again = sampling.sample(loss, 400, seed=5)
    assert all(np.array_equal(x[k], again.inputs()[k]) for k in x)
    assert {0, 1} <= set(np.unique(s.origin))


def test_edge_points_reach_the_extremes_of_the_unit_interval():
    s = sampling.sample(losscomp.compile("bce"), 100, seed=0)
    p = s.columns["p"]
    assert p.min() <= 1e-300 and p.max() == 1 - 2.0 ** -52


# -- regions --------------------------------------------------------------------------------------

@pytest.mark.parametrize("lo, hi, expected", [(1e-20, 1e-10, 1e-10), (0.7, 1.3, 1.0), (-3.0, -2.5, -3.0),
                                              (0.999999999999999, 0.9999999999999991, 1 - 1e-15)])
def test_simplest_number_in_a_bracket(lo, hi, expected):
    assert regions.simplest(lo, hi) == expected


def test_a_threshold_is_found_and_narrowed_by_bisection():
    x = np.concatenate([np.geomspace(1e-30, 1e-3, 40), [0.5, 0.9]])
    table = regions.FeatureTable([(kinks.Feature(sympy.Symbol("p"), "p", "p", ("p", 1.0)), x)], [])
    bad = x < 3e-9
    region = regions.explain(bad, np.ones_like(bad), table)
    assert region is not None and region.clauses[0].atoms[0].op.startswith("<")
    refined = regions.refine(region, np.arange(len(x)), bad, table, lambda name, values, unit: values < 3e-9)
    assert refined.text == "p < 3e-09"


def test_two_cells_give_a_disjunction():
    p = np.array([1e-20, 1e-10, 0.5, 0.9, 1 - 1e-12] * 2)
    y = np.array([0.0] * 5 + [1.0] * 5)
    table = regions.FeatureTable([(kinks.Feature(sympy.Symbol("p"), "p", "p"), p)],
                                 [("y == 0", y == 0), ("y == 1", y == 1)])
    bad = ((y == 1) & (p < 1e-9)) | ((y == 0) & (p > 0.99))
    assert regions.explain(bad, np.ones_like(bad), table).text == \
        "(y == 0 and p >= 1 - 1e-12) or (y == 1 and p <= 1e-10)"


# -- verify ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mse", "mae", "huber", "pinball", "hinge", "log_cosh", "tukey", "poisson_nll"])
def test_emitted_numpy_code_passes_verification(name):
    report = verify(name, backends=["numpy"], points=240)
    assert report.ok, str(report)
    quantities = {(r.quantity.split()[0], r.reference.split()[0]) for r in report.rows}
    assert {("loss", "mpmath"), ("grad", "mpmath"), ("hessian", "mpmath"), ("grad", "float64"),
            ("grad", "mpmath"), ("dtype", "float32")} <= quantities


def test_every_backend_with_autodiff():
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    pytest.importorskip("jax")
    report = verify("huber", points=200)
    assert report.ok, str(report)
    assert {r.backend for r in report.rows} == {"sympy", "numpy", "torch", "tensorflow", "jax"}
    assert any(r.reference == "torch.autograd (twice)" for r in report.rows)
    assert any(r.reference == "tf.GradientTape" for r in report.rows)
    assert any(r.reference == "jax.grad (twice)" for r in report.rows)


@pytest.mark.parametrize("source", ["pinball", PER_SAMPLE, "sparse_softmax_ce", "dice"])
def test_emitted_jax_code_passes_verification(source):
    """In float64 (verify turns JAX's x64 mode on for its rows): against the 50-digit oracle, float64
    differences and jax.grad of the emitted loss; float32 in gives float32 out."""
    jax = pytest.importorskip("jax")
    report = verify(source, backends=["jax"], points=120)
    assert report.ok, str(report)
    rows = [r for r in report.rows if r.backend == "jax"]
    assert any(r.reference == "jax.grad" and r.points > 0 for r in rows)
    assert any(r.quantity == "dtype" and r.status == "ok" for r in rows)
    assert not jax.config.jax_enable_x64, "verify left JAX's x64 mode on"


def test_a_per_sample_loss_is_verified_by_differences():
    report = verify(PER_SAMPLE, backends=["numpy"], points=120)
    assert report.ok, str(report)
    assert any(r.quantity == "hessian z" and r.reference.startswith("mpmath") and r.points > 0 for r in report.rows)


class _Broken:
    """A compiled loss whose emitted NumPy grad is twice too large."""

    def __init__(self, loss):
        self._loss = loss

    def __getattr__(self, name):
        return getattr(self._loss, name)

    def build(self, backend):
        module = self._loss.build(backend)
        broken = types.ModuleType("broken")
        broken.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
        broken.grad = lambda *a, **k: 2 * module.grad(*a, **k)
        return broken


def test_verification_fails_for_a_wrong_gradient():
    report = verify(_Broken(losscomp.compile("mse")), backends=["numpy"], points=120)
    failed = {(r.quantity, r.reference) for r in report.failures}
    assert ("grad y_pred", "mpmath (50 digits)") in failed
    assert ("grad y_pred", "float64 differences of loss") in failed
    assert "FAIL" in str(report) and "worst at" in str(report)


def test_verify_command(capsys):
    assert main(["verify", "huber", "--backend", "numpy", "--points", "120"]) == 0
    out = capsys.readouterr().out
    assert "mpmath (50 digits)" in out and "all checks passed" in out
    assert main(["verify", "pinball", "--backend", "numpy", "--points", "120", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["rows"]
    assert main(["verify", "f(y, p) = lgo(p)", "--backend", "numpy"]) == 2
    assert "did you mean 'log'" in capsys.readouterr().err


def test_emitted_tolerances_are_tight():
    assert emitted.RTOL <= 1e-9
