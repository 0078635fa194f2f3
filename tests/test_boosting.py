"""Custom XGBoost and LightGBM objectives from compiled losses (losscomp.boosting).

Truth is each library's built-in objective: the same data, weights, seed and parameters, trained once
with the built-in and once with the generated objective, must give the same margins within 1e-6.
Settings that make the two runs comparable, and why:

- Both runs start from margin 0: XGBoost gets base_margin = 0 on its DMatrix (a built-in objective
  would otherwise estimate an intercept, a custom one starts at base_score), LightGBM gets
  boost_from_average=False (which a custom objective never does).
- The squared-error built-ins minimize 0.5 (y - f)^2 (gradient f - y, Hessian 1): the custom loss is
  written with the 0.5, not as the catalog's mse (whose Hessian 2 would change the leaves through lambda).
- Poisson: both libraries inflate the built-in Hessian to exp(f + max_delta_step) (default 0.7), a
  safeguard; XGBoost is run with max_delta_step=0, LightGBM with poisson_max_delta_step=1e-12 (it must be
  > 0), so that the built-in Hessian is exp(f), the loss's own.
- Softmax: the libraries scale the diagonal of the Hessian block (2 for XGBoost, K/(K-1) for LightGBM);
  the generated objective does the same by default (multiclass_scale=None).
- Both libraries take gradients in float32, so the predictions agree to float32 rounding, which grows
  with the rounds: 10 rounds keep it below 1e-6 on margins of size about 5.

Quantile (and L1) built-ins refit every leaf to a quantile of its residuals after growing the tree,
which no custom objective can do; the comparisons are then XGBoost's linear booster (no trees, no
refit: predictions within 1e-6) and the first tree's structure (splits, thresholds, counts, Hessian
sums identical; only the leaf values differ, by the refit).
"""

from __future__ import annotations

import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import losscomp
from losscomp.boosting import BoostingInputError, BoostingObjective

ROOT = Path(__file__).resolve().parents[1]
N, D, K = 1000, 6, 4
ROUNDS = 10
HALF_SQUARED = "half_squared(y, y_pred) = 0.5 * (y - y_pred)^2"
PSEUDO_HUBER = "pseudo_huber(y, y_pred; delta = 1) = delta^2 * (sqrt(1 + (e / delta)^2) - 1) where e = y - y_pred"
FAIR = "fair(y, y_pred; c = 1) = c^2 * (abs(e) / c - log1p(abs(e) / c)) where e = y_pred - y"


@pytest.fixture(scope="module")
def data():
    """Features, a smooth signal f, labels of every kind derived from it, and sample weights."""
    rng = np.random.default_rng(20260614)
    X = rng.normal(size=(N, D))
    f = X[:, 0] + 0.5 * np.sin(3 * X[:, 1]) + 0.3 * X[:, 2] ** 2
    return {
        "X": X,
        "weight": rng.uniform(0.5, 2.0, size=N),
        "regression": f + rng.normal(size=N),
        "heavy": f + rng.standard_t(2, size=N),
        "binary": (rng.random(N) < 1 / (1 + np.exp(-f))).astype(np.float64),
        "count": rng.poisson(np.exp(0.5 * f)).astype(np.float64),
        "classes": np.digitize(f + 0.3 * rng.normal(size=N), np.quantile(f, [0.25, 0.5, 0.75])).astype(np.float64),
    }


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# XGBoost: generated objectives against the built-in ones.
# ---------------------------------------------------------------------------------------------

XGB_BASE = {"max_depth": 3, "eta": 0.3, "tree_method": "hist", "seed": 0, "nthread": 1}
XGB_CASES = {   # id: (loss, built-in parameters, labels, classes)
    "squared_error": (HALF_SQUARED, {"objective": "reg:squarederror"}, "regression", None),
    "logistic": ("bce_logits", {"objective": "binary:logistic"}, "binary", None),
    "poisson": ("poisson_nll", {"objective": "count:poisson", "max_delta_step": 0.0}, "count", None),
    "pseudo_huber": (PSEUDO_HUBER, {"objective": "reg:pseudohubererror", "huber_slope": 1.0}, "heavy", None),
    "softmax_k4": ("softmax_ce", {"objective": "multi:softprob", "num_class": K}, "classes", K),
    "sparse_softmax_k4": ("sparse_softmax_ce", {"objective": "multi:softprob", "num_class": K}, "classes", K),
}


def _dmatrix(xgb, data, labels, k):
    dm = xgb.DMatrix(data["X"], label=data[labels], weight=data["weight"])
    dm.set_base_margin(np.zeros(N if k is None else (N, k)))
    return dm


@pytest.mark.parametrize("case", list(XGB_CASES))
def test_xgboost_train_matches_builtin(data, case):
    xgb = pytest.importorskip("xgboost")
    source, builtin, labels, k = XGB_CASES[case]
    reference = xgb.train({**XGB_BASE, **builtin}, _dmatrix(xgb, data, labels, k), ROUNDS)
    objective = losscomp.compile(source).build("xgboost")
    custom = xgb.train({**XGB_BASE, **({"num_class": k} if k else {})}, _dmatrix(xgb, data, labels, k), ROUNDS,
                       obj=objective.objective)
    expected = reference.predict(_dmatrix(xgb, data, labels, k), output_margin=True)
    got = custom.predict(_dmatrix(xgb, data, labels, k), output_margin=True)
    assert got.shape == expected.shape == ((N,) if k is None else (N, k))
    assert np.max(np.abs(expected)) > 1                      # the models did learn something
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["squared_error", "pseudo_huber", "softmax_k4"])
def test_xgboost_sklearn_matches_builtin(data, case):
    xgb = pytest.importorskip("xgboost")
    source, builtin, labels, k = XGB_CASES[case]
    options = {key: value for key, value in builtin.items() if key not in ("objective", "num_class")}
    estimator = xgb.XGBRegressor if k is None else xgb.XGBClassifier
    common = {"n_estimators": ROUNDS, "max_depth": 3, "learning_rate": 0.3, "tree_method": "hist",
              "random_state": 0, "n_jobs": 1, "base_score": 0.0}
    objective = losscomp.compile(source).build("xgboost")
    X, y, w = data["X"], data[labels], data["weight"]
    expected = estimator(objective=builtin["objective"], **common, **options).fit(X, y, sample_weight=w)
    got = estimator(objective=objective.sklearn_objective, **common).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(got.predict(X, output_margin=True), expected.predict(X, output_margin=True),
                               rtol=0, atol=1e-6)


def test_xgboost_quantile_matches_builtin_linear_booster(data):
    """reg:quantileerror's gradient and Hessian (before any leaf refit) through gblinear."""
    xgb = pytest.importorskip("xgboost")
    tau = 0.8
    base = {"booster": "gblinear", "updater": "coord_descent", "eta": 0.5, "nthread": 1, "reg_lambda": 0.1,
            "reg_alpha": 0.0}
    reference = xgb.train({**base, "objective": "reg:quantileerror", "quantile_alpha": tau},
                          _dmatrix(xgb, data, "regression", None), 20)
    objective = losscomp.compile("pinball", params={"tau": tau}).build("xgboost")
    assert objective.hessian_rule == "constant"
    custom = xgb.train(base, _dmatrix(xgb, data, "regression", None), 20, obj=objective.objective)
    expected = reference.predict(_dmatrix(xgb, data, "regression", None), output_margin=True)
    np.testing.assert_allclose(custom.predict(_dmatrix(xgb, data, "regression", None), output_margin=True),
                               expected, rtol=0, atol=1e-6)
    assert abs(np.mean(data["regression"] < expected) - tau) < 0.05


@pytest.mark.parametrize("loss, builtin", [("pinball", {"objective": "reg:quantileerror", "quantile_alpha": 0.8}),
                                           ("mae", {"objective": "reg:absoluteerror"})])
def test_xgboost_first_tree_matches_builtin_quantile(data, loss, builtin):
    xgb = pytest.importorskip("xgboost")
    pytest.importorskip("pandas")
    params = {"tau": 0.8} if loss == "pinball" else None
    objective = losscomp.compile(loss, params=params).build("xgboost")
    reference = xgb.train({**XGB_BASE, **builtin}, _dmatrix(xgb, data, "regression", None), 1)
    custom = xgb.train(XGB_BASE, _dmatrix(xgb, data, "regression", None), 1, obj=objective.objective)
    splits = ["Node", "Feature", "Split", "Yes", "No", "Cover"]
    expected, got = reference.trees_to_dataframe(), custom.trees_to_dataframe()
    assert len(expected) > 7 and expected[splits].equals(got[splits])
    np.testing.assert_allclose(got["Gain"][got["Feature"] != "Leaf"], expected["Gain"][expected["Feature"] != "Leaf"],
                               rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# LightGBM: generated objectives against the built-in ones.
# ---------------------------------------------------------------------------------------------

LGB_BASE = {"num_leaves": 8, "learning_rate": 0.3, "seed": 0, "num_threads": 1, "verbose": -1,
            "boost_from_average": False, "deterministic": True}
LGB_CASES = {   # id: (loss, build options, built-in parameters, labels, classes)
    "squared_error": (HALF_SQUARED, {}, {"objective": "regression"}, "regression", None),
    "logistic": ("bce_logits", {}, {"objective": "binary"}, "binary", None),
    "poisson": ("poisson_nll", {}, {"objective": "poisson", "poisson_max_delta_step": 1e-12}, "count", None),
    "softmax_k4": ("softmax_ce", {}, {"objective": "multiclass", "num_class": K}, "classes", K),
    "sparse_softmax_k4": ("sparse_softmax_ce", {}, {"objective": "multiclass", "num_class": K}, "classes", K),
    # LightGBM's huber objective takes the constant Hessian 1 everywhere, as hessian="constant" does
    "huber": ("huber", {"params": {"delta": 1.3}, "hessian": "constant"}, {"objective": "huber", "alpha": 1.3},
              "heavy", None),
    "fair": (FAIR, {}, {"objective": "fair", "fair_c": 1.0}, "heavy", None),
}


@pytest.mark.parametrize("case", list(LGB_CASES))
def test_lightgbm_train_matches_builtin(data, case):
    lgb = pytest.importorskip("lightgbm")
    source, options, builtin, labels, k = LGB_CASES[case]

    def dataset():
        return lgb.Dataset(data["X"], label=data[labels], weight=data["weight"])

    reference = lgb.train({**LGB_BASE, **builtin}, dataset(), ROUNDS)
    objective = losscomp.compile(source).build("lightgbm", **options)
    custom = lgb.train({**LGB_BASE, "objective": objective.objective, **({"num_class": k} if k else {})},
                       dataset(), ROUNDS)
    expected = reference.predict(data["X"], raw_score=True)
    got = custom.predict(data["X"], raw_score=True)
    assert got.shape == expected.shape == ((N,) if k is None else (N, k))
    assert np.max(np.abs(expected)) > 1
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", ["squared_error", "softmax_k4"])
def test_lightgbm_sklearn_matches_builtin(data, case):
    lgb = pytest.importorskip("lightgbm")
    source, options, builtin, labels, k = LGB_CASES[case]
    estimator = lgb.LGBMRegressor if k is None else lgb.LGBMClassifier
    common = {"n_estimators": ROUNDS, "num_leaves": 8, "learning_rate": 0.3, "random_state": 0, "n_jobs": 1,
              "verbose": -1, "boost_from_average": False, "deterministic": True}
    objective = losscomp.compile(source).build("lightgbm", **options)
    X, y, w = data["X"], data[labels], data["weight"]
    expected = estimator(objective=builtin["objective"], **common).fit(X, y, sample_weight=w)
    got = estimator(objective=objective.sklearn_objective, **common).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(got.predict(X, raw_score=True), expected.predict(X, raw_score=True),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("loss, builtin", [("pinball", {"objective": "quantile", "alpha": 0.8}),
                                           ("mae", {"objective": "l1"})])
def test_lightgbm_first_tree_matches_builtin_quantile(data, loss, builtin):
    lgb = pytest.importorskip("lightgbm")
    pytest.importorskip("pandas")
    params = {"tau": 0.8} if loss == "pinball" else None
    objective = losscomp.compile(loss, params=params).build("lightgbm")

    def dataset():
        return lgb.Dataset(data["X"], label=data["regression"], weight=data["weight"])

    reference = lgb.train({**LGB_BASE, **builtin}, dataset(), 1)
    custom = lgb.train({**LGB_BASE, "objective": objective.objective}, dataset(), 1)
    structure = ["node_index", "left_child", "right_child", "split_feature", "threshold", "count", "weight"]
    expected, got = reference.trees_to_dataframe(), custom.trees_to_dataframe()
    assert len(expected) == 15 and expected[structure].equals(got[structure])


# ---------------------------------------------------------------------------------------------
# The metrics, against scikit-learn's.
# ---------------------------------------------------------------------------------------------

def test_metrics_match_sklearn(data):
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    w = data["weight"]
    y, z = data["binary"], rng.normal(size=N)
    xgb_metric = losscomp.compile("bce_logits").build("xgboost").sklearn_metric
    assert xgb_metric.__name__ == "bce_logits"
    assert math.isclose(xgb_metric(y, z, sample_weight=w),
                        metrics.log_loss(y, 1 / (1 + np.exp(-z)), sample_weight=w), rel_tol=1e-12)
    labels, Z = data["classes"], rng.normal(size=(N, K))
    name, value, higher_is_better = losscomp.compile("softmax_ce").build("lightgbm").sklearn_metric(labels, Z, w)
    assert (name, higher_is_better) == ("softmax_ce", False)
    assert math.isclose(value, metrics.log_loss(labels, _softmax(Z), labels=range(K), sample_weight=w), rel_tol=1e-12)
    tau, q = 0.3, rng.normal(size=N)
    pinball = losscomp.compile("pinball", params={"tau": tau}).build("lightgbm")
    assert math.isclose(pinball.sklearn_metric(data["regression"], q, None)[1],
                        metrics.mean_pinball_loss(data["regression"], q, alpha=tau), rel_tol=1e-12)


def test_metrics_inside_training_loops(data):
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    metrics = pytest.importorskip("sklearn.metrics")
    objective = losscomp.compile("bce_logits").build("xgboost")
    dm = _dmatrix(xgb, data, "binary", None)
    history: dict = {}
    booster = xgb.train({**XGB_BASE, "disable_default_eval_metric": True}, dm, ROUNDS, obj=objective.objective,
                        custom_metric=objective.metric, evals=[(dm, "train")], evals_result=history,
                        verbose_eval=False)
    p = 1 / (1 + np.exp(-booster.predict(dm, output_margin=True).astype(np.float64)))
    trace = history["train"]["bce_logits"]
    assert trace == sorted(trace, reverse=True)                # training loss decreases
    assert math.isclose(trace[-1], metrics.log_loss(data["binary"], p, sample_weight=data["weight"]), rel_tol=1e-5)

    objective = losscomp.compile("softmax_ce").build("lightgbm")
    train = lgb.Dataset(data["X"], label=data["classes"], weight=data["weight"])
    record: dict = {}
    booster = lgb.train({**LGB_BASE, "objective": objective.objective, "num_class": K, "metric": "None"}, train,
                        ROUNDS, valid_sets=[train], valid_names=["train"], feval=objective.metric,
                        callbacks=[lgb.record_evaluation(record)])
    expected = metrics.log_loss(data["classes"], _softmax(booster.predict(data["X"], raw_score=True)),
                                sample_weight=data["weight"])
    assert math.isclose(record["train"]["softmax_ce"][-1], expected, rel_tol=1e-9)


# ---------------------------------------------------------------------------------------------
# Per-sample derivatives and the Hessian rules.
# ---------------------------------------------------------------------------------------------

def _tukey(e, c):
    u = (e / c) ** 2
    return np.where(np.abs(e) <= c, c * c / 6 * u * (3 - 3 * u + u * u), c * c / 6)


def test_gradients_are_per_sample_and_weighted():
    """g and h of a loss compiled with reduction='mean' are still the per-sample derivatives (no 1/N),
    checked against central differences of a hand-written Cauchy loss in float64; hessian='exact'
    with hessian_floor=0 keeps l'' where it is positive and puts 0 where it is negative."""
    rng = np.random.default_rng(5)
    y, z, w = rng.normal(size=500), rng.normal(scale=3, size=500), rng.uniform(0.5, 2, size=500)
    c, step = 1.5, 1e-4
    loss = losscomp.compile("cauchy", params={"c": c})                 # reduction='mean'
    g, h = loss.build("xgboost", hessian="exact", hessian_floor=0.0).gradients(y, z, w)

    def cauchy(zz):
        return c * c / 2 * np.log1p(((y - zz) / c) ** 2)

    fd_g = (cauchy(z + step) - cauchy(z - step)) / (2 * step)
    fd_h = (cauchy(z + step) - 2 * cauchy(z) + cauchy(z - step)) / step ** 2
    np.testing.assert_allclose(g, w * fd_g, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(h, w * np.maximum(fd_h, 0.0), rtol=1e-5, atol=1e-5)
    assert np.sum(fd_h < 0) > 100                                    # Cauchy far out: l'' < 0


def test_hessian_floor_and_constant_rules():
    rng = np.random.default_rng(6)
    c, step = 1.0, 1e-4
    y, z, w = rng.normal(size=400), rng.normal(scale=2, size=400), rng.uniform(0.5, 2, size=400)
    smooth = np.abs(np.abs(y - z) - c) > 10 * step                 # central differences away from |e| = c
    tukey = losscomp.compile("tukey", params={"c": c})
    _, h = tukey.build("lightgbm", hessian="exact", hessian_floor=1e-3).gradients(y, z, w)
    fd = (_tukey(y - z - step, c) - 2 * _tukey(y - z, c) + _tukey(y - z + step, c)) / step ** 2
    np.testing.assert_allclose(h[smooth], (w * np.maximum(fd, 1e-3))[smooth], rtol=1e-5, atol=1e-6)
    assert np.sum(fd[smooth] < 0) > 30 and np.sum(fd[smooth] == 0) > 100   # both kinds of floored curvature
    g_const, h_const = tukey.build("lightgbm", hessian="constant").gradients(y, z, w)
    np.testing.assert_array_equal(h_const, w)
    fd_g = (_tukey(y - z - step, c) - _tukey(y - z + step, c)) / (2 * step)
    np.testing.assert_allclose(g_const[smooth], (w * fd_g)[smooth], rtol=1e-6, atol=1e-7)   # step^2 error


@pytest.mark.parametrize("loss, rule", [
    ("pinball", "constant"), ("mae", "constant"), ("hinge", "constant"), ("underestimation", "constant"),
    ("huber", "constant"), ("squared_hinge", "constant"), ("tukey", "constant"), ("cauchy", "constant"),
    ("mse", "exact"), ("log_cosh", "exact"), ("poisson_nll", "exact"), ("bce_logits", "exact"),
    ("mse_underestimation", "exact"), (PSEUDO_HUBER, "exact"), ("softmax_ce", "exact"),
    ("cubic(y, y_pred) = abs(y - y_pred)^3", "exact"),                # l'' = 0 only at the point e = 0
])
def test_auto_rule(loss, rule):
    objective = losscomp.compile(loss).build("xgboost")
    assert objective.hessian_rule == rule
    assert ("h = 1" in objective.describe()) == (rule == "constant")


def _xgboost_splits(booster) -> list[int]:
    return [tree.count("yes=") for tree in booster.get_dump()]


def _lightgbm_splits(booster) -> list[int]:
    return [tree["num_leaves"] - 1 for tree in booster.dump_model()["tree_info"]]


@pytest.fixture(scope="module")
def far_out():
    """Targets on a scale of 20: from margin 0 every residual is far out, where pinball and mae have
    l'' = 0; and the same signal with 20% gross outliers (+10 to +30), where tukey and cauchy have
    l'' <= 0. Returns X, the targets of both, the signal and the outlier mask."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(2000, 4))
    signal = 2 * X[:, 0] + np.sin(2 * X[:, 1])
    outlier = rng.random(2000) < 0.2
    noisy = signal + 0.5 * rng.normal(size=2000) + outlier * rng.uniform(10, 30, size=2000)
    return X, 10 * signal + 10 + rng.normal(size=2000), noisy, signal, outlier


GROWTH_CASES = [("pinball", {"tau": 0.7}), ("mae", None), ("tukey", {"c": 2.0}), ("cauchy", {"c": 1.0})]


def _growth_problem(far_out, loss):
    X, scaled, noisy, signal, outlier = far_out
    return (X, scaled, None) if loss in ("pinball", "mae") else (X, noisy, (signal, outlier))


@pytest.mark.parametrize("loss, params", GROWTH_CASES)
def test_tree_growth_does_not_stall_xgboost(far_out, loss, params):
    xgb = pytest.importorskip("xgboost")
    X, y, robust = _growth_problem(far_out, loss)
    objective = losscomp.compile(loss, params=params).build("xgboost")
    assert objective.hessian_rule == "constant"
    dm = xgb.DMatrix(X, label=y)
    history: dict = {}
    booster = xgb.train({**XGB_BASE, "eta": 1.0, "base_score": 0.0, "disable_default_eval_metric": True}, dm, 30,
                        obj=objective.objective, custom_metric=objective.metric, evals=[(dm, "train")],
                        evals_result=history, verbose_eval=False)
    assert min(_xgboost_splits(booster)) >= 3                      # every tree splits
    trace = history["train"][loss]
    assert trace[-1] < 0.7 * trace[0]
    if robust is not None:                                         # the fit follows the inliers
        signal, outlier = robust
        assert np.median(np.abs(booster.predict(dm, output_margin=True) - signal)[~outlier]) < 0.5


@pytest.mark.parametrize("loss, params", GROWTH_CASES)
def test_tree_growth_does_not_stall_lightgbm(far_out, loss, params):
    lgb = pytest.importorskip("lightgbm")
    X, y, robust = _growth_problem(far_out, loss)
    objective = losscomp.compile(loss, params=params).build("lightgbm")
    booster = lgb.train({**LGB_BASE, "learning_rate": 1.0, "objective": objective.objective},
                        lgb.Dataset(X, label=y), 30)
    assert min(_lightgbm_splits(booster)) >= 3
    prediction = booster.predict(X, raw_score=True)
    assert objective.mean_loss(y, prediction) < 0.7 * objective.mean_loss(y, np.zeros_like(y))
    if robust is not None:
        signal, outlier = robust
        assert np.median(np.abs(prediction - signal)[~outlier]) < 0.5


@pytest.mark.parametrize("loss, params", GROWTH_CASES[:2])
def test_exact_hessian_stalls_where_the_curvature_vanishes(far_out, loss, params):
    """What the constant rule prevents: with l'' = 0 floored at 1e-16, no split reaches
    min_child_weight = 1, and XGBoost grows no tree at all."""
    xgb = pytest.importorskip("xgboost")
    X, y, _ = _growth_problem(far_out, loss)
    objective = losscomp.compile(loss, params=params).build("xgboost", hessian="exact")
    booster = xgb.train({**XGB_BASE, "base_score": 0.0}, xgb.DMatrix(X, label=y), 5, obj=objective.objective)
    assert max(_xgboost_splits(booster)) == 0


@pytest.mark.parametrize("loss, expected", [
    ("mse", lambda y, w: np.average(y, weights=w)),
    ("poisson_nll", lambda y, w: np.log(np.average(y, weights=w))),
    ("bce_logits", lambda y, w: np.log(np.average(y, weights=w) / (1 - np.average(y, weights=w)))),
])
def test_init_score_is_the_best_constant(data, loss, expected):
    pytest.importorskip("scipy")
    labels = {"mse": "regression", "poisson_nll": "count", "bce_logits": "binary"}[loss]
    y, w = data[labels], data["weight"]
    got = losscomp.compile(loss).build("lightgbm").init_score(y, w)
    assert math.isclose(got, expected(y, w), rel_tol=1e-6, abs_tol=1e-7)


def test_init_score_of_pinball_is_the_weighted_quantile(data):
    pytest.importorskip("scipy")
    y, w, tau = data["regression"], data["weight"], 0.3
    objective = losscomp.compile("pinball", params={"tau": tau}).build("xgboost")
    got = objective.init_score(y, w)
    quantile = float(np.quantile(y, tau, weights=w, method="inverted_cdf"))
    assert abs(got - quantile) < 1e-6
    assert objective.mean_loss(y, np.full(N, got), w) <= objective.mean_loss(y, np.full(N, quantile), w) + 1e-12


# ---------------------------------------------------------------------------------------------
# Bad input, options and pickling.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, error, words", [
    (lambda: losscomp.compile("mse").build("xgbost"), losscomp.LossOptionError, "did you mean 'xgboost'"),
    (lambda: losscomp.compile("mse").build("lightgbm", label="truth"), losscomp.LossNameError, "label 'truth'"),
    (lambda: losscomp.compile("mse").build("lightgbm", hessian="diag"), losscomp.LossOptionError, "hessian rule"),
    (lambda: losscomp.compile("mse").build("lightgbm", hessian_floor=-1), losscomp.LossOptionError, "hessian_floor"),
    (lambda: losscomp.compile("mse").build("lightgbm", params={"tau": 1}), losscomp.LossNameError, "no parameter 'tau'"),
    (lambda: losscomp.compile("softmax_ce").build("xgboost", multiclass_scale=0), losscomp.LossOptionError,
     "multiclass_scale"),
    (lambda: losscomp.compile("gaussian_nll").build("xgboost"), losscomp.LossOptionError, "one margin"),
    (lambda: losscomp.compile("f(y, p, s) = s * (y - p)^2").build("xgboost"), losscomp.LossOptionError,
     "label="),
    (lambda: losscomp.compile("dice").build("lightgbm"), losscomp.LossOptionError, "whole batch"),
    (lambda: losscomp.compile("mse").build("numpy", hessian="exact"), losscomp.LossOptionError, "no options"),
])
def test_bad_options(call, error, words):
    with pytest.raises(error, match=re.escape(words)):
        call()


def test_bad_inputs():
    softmax = losscomp.compile("softmax_ce").build("xgboost")
    z = np.zeros((5, K))
    with pytest.raises(BoostingInputError, match="class indices 0 to 3 for 4 classes; found 4"):
        softmax.gradients(np.array([0, 1, 2, 3, 4.0]), z)
    with pytest.raises(BoostingInputError, match=r"margins are \(n, K\)"):
        softmax.gradients(np.zeros(5), np.zeros(5))
    mse = losscomp.compile("mse").build("lightgbm")
    with pytest.raises(BoostingInputError, match=r"labels of shape \(4,\) do not match margins of shape \(5,\)"):
        mse.gradients(np.zeros(4), np.zeros(5))
    with pytest.raises(BoostingInputError, match="3 sample weights for 5 samples"):
        mse.gradients(np.zeros(5), np.zeros(5), np.ones(3))


def test_label_argument_by_name():
    """A loss whose first argument is the margin: wrt names the margin, label= the labels."""
    rng = np.random.default_rng(9)
    y, z = rng.normal(size=50), rng.normal(size=50)
    swapped = losscomp.compile("sq(pred, obs) = 0.5 * (obs - pred)^2", wrt="pred").build("xgboost", label="obs")
    assert (swapped.label, swapped.margin) == ("obs", "pred")
    g, h = swapped.gradients(y, z)
    np.testing.assert_allclose(g, z - y, rtol=1e-15)
    np.testing.assert_array_equal(h, np.ones(50))


def test_pickles_for_workers_and_saved_models(data):
    xgb = pytest.importorskip("xgboost")
    objective = losscomp.compile("pinball", params={"tau": 0.2}).build("xgboost")
    clone = pickle.loads(pickle.dumps(objective))
    assert isinstance(clone, BoostingObjective) and clone.hessian_rule == "constant"
    z = np.linspace(-2, 2, N)
    for a, b in zip(objective.gradients(data["regression"], z), clone.gradients(data["regression"], z)):
        np.testing.assert_array_equal(a, b)
    model = xgb.XGBRegressor(objective=objective.sklearn_objective, n_estimators=3, max_depth=2, n_jobs=1,
                             base_score=0.0).fit(data["X"], data["regression"])
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(data["X"]), model.predict(data["X"]))


# ---------------------------------------------------------------------------------------------
# Distributed: xgboost.dask and lightgbm.DaskLGBMRegressor on a local cluster, objectives unchanged.
# ---------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Parameter n_jobs will be ignored:UserWarning")   # LightGBM's Dask estimator
def test_distributed_training_on_a_local_dask_cluster(data):
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    pytest.importorskip("xgboost.dask")
    pytest.importorskip("lightgbm.dask")
    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    import lightgbm.dask
    import xgboost.dask

    xgb_objective = losscomp.compile("bce_logits").build("xgboost")
    lgb_objective = losscomp.compile(HALF_SQUARED).build("lightgbm")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        # Features with nine values: every worker's part holds all of them, so LightGBM's histogram bins
        # (each machine bins some features from its own rows) do not depend on which rows a worker got.
        features = np.clip(np.round(2 * data["X"]), -4, 4)
        X = da.from_array(features, chunks=(N // 4, D))
        binary = da.from_array(data["binary"], chunks=N // 4)
        response = da.from_array(data["regression"], chunks=N // 4)
        zeros = da.zeros(N, chunks=N // 4)
        train = xgboost.dask.DaskDMatrix(client, X, binary, base_margin=zeros)
        built_in = xgboost.dask.train(client, {**XGB_BASE, "objective": "binary:logistic"}, train, ROUNDS)
        custom = xgboost.dask.train(client, XGB_BASE, train, ROUNDS, obj=xgb_objective.objective,
                                    custom_metric=xgb_objective.metric, evals=[(train, "train")])
        test = xgboost.dask.DaskDMatrix(client, X, base_margin=zeros)
        expected = xgboost.dask.predict(client, built_in["booster"], test, output_margin=True).compute()
        got = xgboost.dask.predict(client, custom["booster"], test, output_margin=True).compute()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        assert custom["history"]["train"]["bce_logits"][-1] < custom["history"]["train"]["bce_logits"][0]

        common = {"n_estimators": ROUNDS, "num_leaves": 8, "learning_rate": 0.3, "random_state": 0, "verbose": -1,
                  "boost_from_average": False, "deterministic": True}
        expected = lightgbm.dask.DaskLGBMRegressor(objective="regression", **common).fit(X, response) \
            .predict(X, raw_score=True).compute()
        got = lightgbm.dask.DaskLGBMRegressor(objective=lgb_objective.sklearn_objective, **common).fit(X, response) \
            .predict(X, raw_score=True).compute()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        assert np.max(np.abs(expected)) > 1


# ---------------------------------------------------------------------------------------------
# The example.
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_quantile_example_coverage(tmp_path, library):
    pytest.importorskip(library)
    pytest.importorskip("matplotlib")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    out = tmp_path / "quantiles.png"
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "gbdt_quantile.py"), "--quick", "--library",
                          library, "-o", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines() if re.match(r"\s*0\.\d0\s", line)]
    coverage = {float(row[0]): float(row[1]) for row in rows}
    assert sorted(coverage) == [0.1, 0.5, 0.9]
    for tau, covered in coverage.items():
        assert abs(covered - tau) <= 0.02, (tau, covered)
    assert out.stat().st_size > 10_000
