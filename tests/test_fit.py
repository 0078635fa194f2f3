"""fit_linear: Newton's method with the generated Hessian, and (proximal) gradient descent.

- Logistic and Poisson regression at n = 10^5, d = 50 against independent maximum-likelihood fits
  (scikit-learn's LogisticRegression and statsmodels' Poisson GLM, unpenalized, tight tolerances).
- newton_hessian against torch.func.hessian of the reduced loss in w, for every smooth catalog loss,
  each restated here as an independent torch formula.
- The refusals: piecewise-linear losses (symbolically), indefinite and singular Hessians
  (numerically), an L1 penalty with Newton; and the penalties against closed forms and sklearn.
- Vector outputs: newton_hessian in W (d, k) against torch.func.hessian for softmax regression and
  multi-output mse (NumPy and PyTorch modules); softmax regression by Newton against statsmodels'
  MNLogit (the same reference class) and scikit-learn (unpenalized, and with the equivalent C).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import losscomp
from losscomp import NewtonNotApplicableError, fit_linear

ROOT = Path(__file__).resolve().parents[1]
TORCH_JIT_NOISE = "ignore:`torch.jit.script` is deprecated:DeprecationWarning"  # torch's first forward-AD use


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------------------------------------
# Acceptance 1: logistic and Poisson regression at 10^5 x 50, against statsmodels and sklearn.
# ---------------------------------------------------------------------------------------------

N, D = 100_000, 50


def _design(rng: np.random.Generator) -> np.ndarray:
    return np.column_stack([np.ones(N), rng.normal(size=(N, D - 1))])


@pytest.fixture
def one_blas_thread():
    """One BLAS thread for the 10^5 x 50 fits: OpenBLAS's threads spin-wait for each other, which
    makes these tests many times slower on a machine whose cores are busy with other work."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def logistic_data():
    rng = _rng(20260601)
    X = _design(rng)
    w_true = rng.normal(scale=0.3, size=D)
    y = (rng.random(N) < 1 / (1 + np.exp(-(X @ w_true)))).astype(np.float64)
    return X, y


@pytest.fixture(scope="module")
def poisson_data():
    rng = _rng(20260602)
    X = _design(rng)
    w_true = rng.normal(scale=0.1, size=D)
    counts = rng.poisson(np.exp(X @ w_true)).astype(np.float64)
    return X, counts


def test_logistic_regression_matches_maximum_likelihood(logistic_data, one_blas_thread):
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, y = logistic_data
    result = fit_linear("bce_logits", X, y, method="newton", tol=1e-8)
    assert result.converged and result.grad_norm < 1e-8
    assert result.n_iter <= 15
    # scikit-learn without a penalty (C = inf), its own Newton-Cholesky solver, the intercept in X:
    # the mean BCE on logits is its negative log-likelihood / n
    reference = linear_model.LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=100,
                                                fit_intercept=False).fit(X, y).coef_[0]
    assert np.max(np.abs(result.w - reference)) <= 1e-6


def test_poisson_regression_matches_maximum_likelihood(poisson_data, one_blas_thread):
    statsmodels = pytest.importorskip("statsmodels.api")
    X, counts = poisson_data
    result = fit_linear("poisson_nll", X, counts, method="newton", tol=1e-8)
    assert result.converged and result.grad_norm < 1e-8
    assert result.n_iter <= 15
    # poisson_nll = exp(eta) - y eta is the Poisson GLM's negative log-likelihood / n up to log(y!);
    # statsmodels fits the GLM by iteratively reweighted least squares
    family = statsmodels.families.Poisson()
    reference = statsmodels.GLM(counts, X, family=family).fit(tol=1e-12, maxiter=100).params
    assert np.max(np.abs(result.w - reference)) <= 1e-6


# ---------------------------------------------------------------------------------------------
# Acceptance 2: newton_hessian = torch.func.hessian of the reduced loss in w.
# ---------------------------------------------------------------------------------------------

def _residuals(rng, n, bands):
    """Signed residuals with |r| drawn from the given bands (each (lo, hi)), so none is near a kink."""
    which = rng.integers(len(bands), size=n)
    lo, hi = np.array(bands)[which].T
    return rng.choice([-1.0, 1.0], size=n) * rng.uniform(lo, hi)


def _case(name: str, rng: np.random.Generator):
    """(X, y, w, params, torch reference l(y, t, **params) per element) for one catalog loss."""
    import torch
    import torch.nn.functional as F

    n, d = 16, 3
    X = rng.normal(size=(n, d))
    w = rng.normal(scale=0.5, size=d)
    t = X @ w
    regression = {
        "mse": ({}, [(0.0, 2.0)], lambda y, t: (y - t) ** 2),
        "huber": ({"delta": 0.8}, [(0.05, 0.7), (0.9, 2.5)],
                  lambda y, t, delta: F.huber_loss(t, y, reduction="none", delta=delta)),
        "log_cosh": ({}, [(0.0, 3.0)], lambda y, t: torch.log(torch.cosh(t - y))),
        "cauchy": ({"c": 1.5}, [(0.0, 4.0)], lambda y, t, c: c ** 2 / 2 * torch.log1p(((y - t) / c) ** 2)),
        "tukey": ({"c": 3.0}, [(0.05, 2.8)],      # inside |e| < c, where the biweight is not flat
                  lambda y, t, c: c ** 2 / 6 * (1 - (1 - ((y - t) / c) ** 2) ** 3)),
        "mse_underestimation": ({"weight": 0.5}, [(0.05, 2.0)],
                                lambda y, t, weight: (y - t) ** 2 + weight * 2 * torch.relu(y - t)),
        # piecewise linear: l'' = 0 off the kinks, for autodiff too
        "mae": ({}, [(0.05, 2.0)], lambda y, t: torch.abs(y - t)),
        "pinball": ({"tau": 0.3}, [(0.05, 2.0)],
                    lambda y, t, tau: torch.maximum(tau * (y - t), (tau - 1) * (y - t))),
    }
    if name in regression:
        params, bands, reference = regression[name]
        y = t + _residuals(rng, n, bands)
    elif name == "bce_logits":
        params, reference = {}, lambda y, t: F.binary_cross_entropy_with_logits(t, y, reduction="none")
        y = rng.integers(2, size=n).astype(np.float64)
    elif name == "poisson_nll":
        params = {}
        reference = lambda y, t: F.poisson_nll_loss(t, y, log_input=True, full=False, reduction="none")  # noqa: E731
        y = rng.poisson(np.exp(t)).astype(np.float64)
    elif name in ("squared_hinge", "hinge"):
        params = {}
        power = 2 if name == "squared_hinge" else 1
        reference = lambda y, t: torch.clamp(1 - y * t, min=0) ** power  # noqa: E731
        y = rng.choice([-1.0, 1.0], size=n)
        y = np.where(np.abs(y * t - 1) < 0.05, -y, y)          # no margin at the kink y t = 1
    elif name == "bce":
        X = rng.uniform(0.5, 1.0, size=(n, d))                  # p = X @ w in (0.15, 0.6)
        w = rng.uniform(0.1, 0.2, size=d)
        params = {}
        reference = lambda y, p: -(y * torch.log(p) + (1 - y) * torch.log(1 - p))  # noqa: E731
        y = rng.integers(2, size=n).astype(np.float64)
    else:
        raise KeyError(name)
    return X, y, w, params, reference


SMOOTH = ["mse", "huber", "log_cosh", "bce_logits", "bce", "poisson_nll", "cauchy", "tukey",
          "squared_hinge", "mse_underestimation"]
FLAT = ["mae", "pinball", "hinge"]


@pytest.mark.filterwarnings(TORCH_JIT_NOISE)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", SMOOTH + FLAT)
def test_newton_hessian_matches_torch_func_hessian(name, reduction):
    torch = pytest.importorskip("torch")
    X, y, w, params, reference = _case(name, _rng(sum(map(ord, name + reduction))))
    mod = losscomp.compile(name, reduction=reduction).build("numpy")
    generated = mod.newton_hessian(X, y, w, **params)

    Xt, yt = torch.tensor(X), torch.tensor(y)

    def objective(wt):
        values = reference(yt, Xt @ wt, **params)
        return values.mean() if reduction == "mean" else values.sum()

    expected = torch.func.hessian(objective)(torch.tensor(w)).numpy()
    assert generated.shape == (X.shape[1], X.shape[1])
    scale = max(np.max(np.abs(expected)), 1.0 if name in FLAT else 0.0)
    assert np.max(np.abs(generated - expected)) <= 1e-8 * scale, (generated, expected)
    if name in FLAT:
        assert np.all(generated == 0)


# ---------------------------------------------------------------------------------------------
# Acceptance 4 and the other refusals.
# ---------------------------------------------------------------------------------------------

def _regression(seed: int, n: int = 400, d: int = 4, noise: float = 0.5):
    rng = _rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, d - 1))])
    w_true = np.arange(1.0, d + 1) / d
    return X, X @ w_true + noise * rng.normal(size=n), w_true


@pytest.mark.parametrize("name, labels, suggestion", [
    ("mae", "real", "huber"),
    ("pinball", "real", "softplus"),
    ("hinge", "sign", "squared_hinge"),
    ("underestimation", "real", "mse_underestimation"),
])
def test_piecewise_linear_losses_refuse_newton(name, labels, suggestion):
    X, y, _ = _regression(1)
    if labels == "sign":
        y = np.sign(y - np.median(y))
    with pytest.raises(NewtonNotApplicableError) as info:
        fit_linear(name, X, y, method="newton")
    message = str(info.value)
    assert isinstance(info.value, losscomp.LossError)
    assert f"Newton's method does not apply to '{name}'" in message
    assert "vanishes almost everywhere" in message
    assert suggestion in message and "method='gd'" in message
    # the same loss is fine with gradient descent
    assert fit_linear(name, X, y, method="gd", max_iter=50).n_iter > 0


def test_user_written_piecewise_linear_loss_is_refused_symbolically():
    source = "f(y, p; a = 2) = a * relu(y - p) + abs(p - y) - 0.1 * p"
    assert losscomp.fit.curvature_vanishes(losscomp.compile(source))
    assert not losscomp.fit.curvature_vanishes(losscomp.compile("huber"))
    X, y, _ = _regression(2)
    with pytest.raises(NewtonNotApplicableError, match="huber or log_cosh for regression"):
        fit_linear(source, X, y)


def test_the_suggested_smooth_pinball_fits_with_newton():
    # the alternative the pinball error offers, as loss-language text: quantile regression by Newton
    source = "smooth_pinball(y, y_pred; tau = 0.5, s = 0.05) = tau * e + s * softplus(-e / s)\n  where e = y - y_pred"
    X, y, _ = _regression(3)
    result = fit_linear(source, X, y, params={"tau": 0.9})
    assert result.converged and result.n_iter <= 30
    assert abs(np.mean(y <= X @ result.w) - 0.9) < 0.03       # about 90% of the points lie below the fit


@pytest.mark.parametrize("name, params", [("cauchy", {"c": 0.1}), ("tukey", {"c": 1.0})])
def test_indefinite_hessian_far_out_is_refused(name, params):
    X, y, _ = _regression(4)
    with pytest.raises(NewtonNotApplicableError, match="indefinite") as info:
        fit_linear(name, X, 10 * y, params=params)      # from w = 0 most residuals are far out: l'' < 0
    assert "negative curvature" in str(info.value) and "huber" in str(info.value)


def test_singular_hessian_is_refused_and_l2_repairs_it():
    X, y, _ = _regression(5)
    far = y + 100                                        # every residual outside delta: l'' = 0
    with pytest.raises(NewtonNotApplicableError, match="singular") as info:
        fit_linear("huber", X, far, params={"delta": 0.5})
    assert "500" not in str(info.value) and "400 of 400 samples have zero curvature" in str(info.value)
    assert "l2 > 0" in str(info.value)
    assert fit_linear("huber", X, far, params={"delta": 0.5}, l2=1e-3).converged


def test_newton_refuses_l1():
    X, y, _ = _regression(6)
    with pytest.raises(NewtonNotApplicableError, match="L1 penalty") as info:
        fit_linear("mse", X, y, l1=0.1)
    assert "method='gd'" in str(info.value)


def test_robust_regression_huber_then_tukey():
    # outliers: huber's fit is a good start for the redescending biweight, where its Hessian is PD
    X, y, w_true = _regression(7, n=2000)
    rng = _rng(70)
    bad = rng.choice(y.size, size=200, replace=False)
    y = y.copy()
    y[bad] += rng.uniform(20, 40, size=bad.size)
    ols = fit_linear("mse", X, y)
    huber = fit_linear("huber", X, y)
    tukey = fit_linear("tukey", X, y, w0=huber.w)
    assert ols.n_iter == 1 and huber.converged and tukey.converged
    assert np.linalg.norm(tukey.w - w_true) < np.linalg.norm(huber.w - w_true) < np.linalg.norm(ols.w - w_true)
    assert np.linalg.norm(tukey.w - w_true) < 0.05


# ---------------------------------------------------------------------------------------------
# Penalties, gradient descent, reductions, results.
# ---------------------------------------------------------------------------------------------

def test_ridge_is_one_newton_step_to_the_closed_form():
    X, y, _ = _regression(8)
    n, l2 = len(y), 0.3
    result = fit_linear("mse", X, y, l2=l2)
    # mean (y - Xw)^2 + l2 |w|^2: (X^T X / n + l2 I) w = X^T y / n
    closed = np.linalg.solve(X.T @ X / n + l2 * np.eye(X.shape[1]), X.T @ y / n)
    assert result.n_iter == 1 and result.converged
    np.testing.assert_allclose(result.w, closed, rtol=1e-10, atol=1e-12)


def test_elastic_net_by_proximal_gradient_matches_sklearn():
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, y, _ = _regression(9, n=300, d=8)
    X[:, 1:] += 0.3 * X[:, [1]]                           # correlated columns
    l1, l2 = 0.3, 0.05
    result = fit_linear("mse", X, y, method="gd", l1=l1, l2=l2, tol=1e-10, max_iter=20_000)
    assert result.converged
    # sklearn's ElasticNet minimizes |y - Xw|^2 / (2n) + a r |w|_1 + a (1 - r) |w|^2 / 2, half of ours
    alpha = l1 / 2 + l2
    sk = linear_model.ElasticNet(alpha=alpha, l1_ratio=(l1 / 2) / alpha, fit_intercept=False, tol=1e-14,
                                 max_iter=100_000).fit(X, y)
    np.testing.assert_allclose(result.w, sk.coef_, atol=1e-7)
    assert np.any(result.w == 0) and np.array_equal(result.w == 0, sk.coef_ == 0)
    # the objective is the seed's regularized_loss: loss + l1 sum|w| + l2 sum w^2
    expected = np.mean((y - X @ result.w) ** 2) + l1 * np.sum(np.abs(result.w)) + l2 * np.sum(result.w ** 2)
    assert result.loss == pytest.approx(expected, rel=1e-12)


def test_gradient_descent_reaches_the_newton_solution():
    rng = _rng(10)
    X = np.column_stack([np.ones(500), rng.normal(size=(500, 3))])
    y = (rng.random(500) < 1 / (1 + np.exp(-X @ np.array([0.5, 1.0, -1.0, 0.3])))).astype(np.float64)
    newton = fit_linear("bce_logits", X, y)
    gd = fit_linear("bce_logits", X, y, method="gd", tol=1e-7)
    assert newton.converged and gd.converged and gd.n_iter > newton.n_iter
    np.testing.assert_allclose(gd.w, newton.w, atol=1e-5)
    assert np.all(np.diff(gd.losses) <= 1e-15) and np.all(np.diff(newton.losses) <= 1e-15)


def test_fixed_step_gradient_descent_like_the_seed():
    X, y, _ = _regression(11)
    ok = fit_linear("mse", X, y, method="gd", step_size=0.1, max_iter=2000, tol=1e-9)
    assert ok.converged and np.all(np.array([it.step for it in ok.history[:-1]]) == 0.1)
    diverged = fit_linear("mse", X, y, method="gd", step_size=50.0, max_iter=2000)
    assert not diverged.converged and "diverged" in diverged.message


def test_cholesky_without_scipy(monkeypatch):
    X, y, _ = _regression(19)
    start = fit_linear("huber", X, y).w
    with_scipy = fit_linear("cauchy", X, y, w0=start)
    monkeypatch.setitem(sys.modules, "scipy.linalg", None)      # NumPy's factor and triangular solves
    without = fit_linear("cauchy", X, y, w0=start)
    assert without.converged and without.n_iter == with_scipy.n_iter
    np.testing.assert_allclose(without.w, with_scipy.w, rtol=1e-12)
    with pytest.raises(NewtonNotApplicableError, match="indefinite"):
        fit_linear("cauchy", X, 10 * y, params={"c": 0.1})


def test_sum_reduction_gives_the_same_coefficients():
    X, y, _ = _regression(12)
    mean = fit_linear("log_cosh", X, y)
    total = fit_linear(losscomp.compile("log_cosh", reduction="sum"), X, y, tol=1e-8 * len(y))
    np.testing.assert_allclose(total.w, mean.w, atol=1e-9)
    assert total.loss == pytest.approx(mean.loss * len(y), rel=1e-12)


def test_bce_on_probabilities_needs_a_start_inside_its_domain():
    rng = _rng(13)
    X = rng.uniform(0.5, 1.0, size=(300, 3))
    y = (rng.random(300) < X @ np.array([0.1, 0.2, 0.3])).astype(np.float64)
    with pytest.raises(losscomp.LossOptionError, match="not finite at the starting point"):
        fit_linear("bce", X, y)                          # p = X @ 0 = 0: log(0)
    result = fit_linear("bce", X, y, w0=np.full(3, 0.15))
    assert result.converged and np.all((X @ result.w > 0) & (X @ result.w < 1))


def test_result_and_history():
    X, y, _ = _regression(14)
    result = fit_linear("huber", X, y, params={"delta": 0.7})
    assert len(result.history) == result.n_iter + 1
    assert result.history[0].loss == pytest.approx(np.mean(np.where(np.abs(y) <= 0.7, 0.5 * y ** 2,
                                                                    0.7 * (np.abs(y) - 0.35))))
    assert result.grad_norms[-1] <= 1e-8 < result.grad_norms[0]
    assert np.isnan(result.history[-1].step) and all(0 < it.step <= 1 for it in result.history[:-1])
    assert result.losses.shape == (result.n_iter + 1,) and result.loss == result.losses[-1]
    assert "converged" in result.message and "huber" in repr(result) and "newton" in repr(result)


def test_progress_display():
    X, y, _ = _regression(15)
    stream = io.StringIO()
    result = fit_linear("log_cosh", X, y, progress=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("fit log_cosh (newton): iter     0  loss")
    assert f"iter {result.n_iter:>5}" in lines[-2] and lines[-1].endswith(result.message)


def test_progress_true_is_silent_when_not_a_terminal(capsys):
    X, y, _ = _regression(16)
    fit_linear("mse", X, y, progress=True)
    assert capsys.readouterr() == ("", "")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_with_and_without_rich(monkeypatch):
    X, y, _ = _regression(17)
    pytest.importorskip("rich")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fit_linear("log_cosh", X, y, progress=True)
    assert "fit log_cosh (newton)" in terminal.getvalue() and "|grad|" in terminal.getvalue()
    assert "converged: gradient norm" in terminal.getvalue()
    monkeypatch.setitem(sys.modules, "rich.progress", None)    # as if rich were not installed
    plain = _Terminal()
    monkeypatch.setattr(sys, "stderr", plain)
    result = fit_linear("log_cosh", X, y, progress=True)
    assert plain.getvalue().startswith("\rfit log_cosh (newton): iter     0")
    assert plain.getvalue().endswith(result.message + "\n")


@pytest.mark.parametrize("kwargs, error, text", [
    ({"method": "newtn"}, losscomp.LossOptionError, "did you mean 'newton'"),
    ({"params": {"delt": 1.0}}, losscomp.LossNameError, "did you mean 'delta'"),
    ({"l2": -1.0}, losscomp.LossOptionError, "l2 must be"),
    ({"step_size": 0.1}, losscomp.LossOptionError, "step_size"),
    ({"w0": np.zeros(3)}, losscomp.LossOptionError, "w0 must have shape (4,)"),
    ({"inputs": {"yy": 1.0}}, losscomp.LossNameError, "not an input of 'huber'"),
    ({"progress": 3}, losscomp.LossOptionError, "progress must be"),
])
def test_bad_options(kwargs, error, text):
    X, y, _ = _regression(17)
    with pytest.raises(error) as info:
        fit_linear("huber", X, y, **kwargs)
    assert text in str(info.value)


def test_bad_losses_and_shapes():
    X, y, _ = _regression(18)
    with pytest.raises(losscomp.LossOptionError, match="one target"):
        fit_linear("f(a, b) = (a - b)^2 wrt a, b", X, y)
    with pytest.raises(losscomp.LossOptionError, match="reduction='none'"):
        fit_linear(losscomp.compile("mse", reduction="none"), X, y)
    with pytest.raises(losscomp.LossOptionError, match=r"shape \(400,\)"):
        fit_linear("mse", X, y[:10])
    with pytest.raises(losscomp.LossOptionError, match="needs y"):
        fit_linear("mse", X)
    with pytest.raises(losscomp.LossOptionError, match="NaN"):
        fit_linear("mse", X, np.where(y > 0, np.nan, y))


# ---------------------------------------------------------------------------------------------
# Vector outputs: softmax regression, multi-output elementwise losses.
# ---------------------------------------------------------------------------------------------

def _vector_case(name: str, rng: np.random.Generator, n: int = 12, d: int = 3, k: int = 4):
    """(X, y, W, torch reference: the per-sample or per-element loss of (y, Z)) for k outputs."""
    import torch
    import torch.nn.functional as F

    X = rng.normal(size=(n, d))
    W = rng.normal(scale=0.7, size=(d, k))
    if name == "softmax_ce":                       # soft labels, each row on the simplex
        y = rng.dirichlet(np.ones(k), size=n)
        return X, y, W, lambda y, z: -(y * torch.log_softmax(z, dim=1)).sum(dim=1)
    if name == "sparse_softmax_ce":
        y = rng.integers(k, size=n)
        return X, y, W, lambda y, z: F.cross_entropy(z, y.long(), reduction="none")
    if name == "mse":
        y = X @ W + rng.normal(size=(n, k))
        return X, y, W, lambda y, z: (y - z) ** 2
    raise KeyError(name)


@pytest.mark.filterwarnings(TORCH_JIT_NOISE)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", ["softmax_ce", "sparse_softmax_ce", "mse"])
def test_vector_newton_hessian_matches_torch_func_hessian(name, reduction, backend):
    torch = pytest.importorskip("torch")
    X, y, W, reference = _vector_case(name, _rng(sum(map(ord, name + reduction))))
    mod = losscomp.compile(name, reduction=reduction).build(backend)
    assert mod.KIND == ("elementwise" if name == "mse" else "per_sample")
    Xt, yt, Wt = torch.tensor(X), torch.tensor(y), torch.tensor(W)
    if backend == "numpy":
        generated = mod.newton_hessian(X, y, W)
    else:
        generated = mod.newton_hessian(Xt, yt, Wt).numpy()

    def objective(V):
        values = reference(yt, Xt @ V)
        return values.mean() if reduction == "mean" else values.sum()

    d, k = W.shape
    expected = torch.func.hessian(objective)(Wt).reshape(d * k, d * k).numpy()   # row-major vec(W)
    assert generated.shape == (d * k, d * k)
    assert np.max(np.abs(generated - expected)) <= 1e-8 * np.max(np.abs(expected))
    if name != "mse":      # singular along the shift W -> W + v 1^T, whose vec is kron(v, ones(k))
        v = _rng(0).normal(size=d)
        shift = np.kron(v, np.ones(k))
        assert np.max(np.abs(generated @ shift)) <= 1e-12 * np.max(np.abs(expected)) * np.linalg.norm(v)


@pytest.fixture(scope="module")
def softmax_data():
    """n = 2000, d = 5 (intercept included), k = 4 classes drawn from a softmax model."""
    rng = _rng(20260603)
    n, d, k = 2000, 5, 4
    X = np.column_stack([np.ones(n), rng.normal(size=(n, d - 1))])
    W_true = rng.normal(scale=0.8, size=(d, k))
    P = np.exp(X @ W_true)
    P /= P.sum(axis=1, keepdims=True)
    labels = (rng.random(n)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
    return X, labels, k


def _full_gradient(X, labels, W, l2=0.0):
    """The gradient of mean cross-entropy + l2 |W|^2 in every entry of W, written out here."""
    Z = X @ W
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    return X.T @ (P - np.eye(W.shape[1])[labels]) / X.shape[0] + 2 * l2 * W


def test_softmax_regression_matches_maximum_likelihood(softmax_data):
    statsmodels = pytest.importorskip("statsmodels.api")
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, labels, k = softmax_data
    sparse = fit_linear("sparse_softmax_ce", X, labels, tol=1e-8)
    dense = fit_linear("softmax_ce", X, np.eye(k)[labels], tol=1e-8)
    for result in (sparse, dense):
        assert result.converged and result.grad_norm < 1e-8 and result.n_iter <= 10
        assert result.w.shape == (X.shape[1], k) and result.reference_class == 0
        assert np.all(result.w[:, 0] == 0) and "reference class" in result.message
        # a stationary point of the full problem, the reference column included
        assert np.linalg.norm(_full_gradient(X, labels, result.w)) < 1e-8
    np.testing.assert_allclose(dense.w, sparse.w, rtol=0, atol=1e-12)
    # statsmodels' MNLogit: Newton's method, class 0 as its reference too
    mnlogit = statsmodels.MNLogit(labels, X).fit(method="newton", tol=1e-14, maxiter=100, disp=0)
    assert np.max(np.abs(sparse.w[:, 1:] - mnlogit.params)) <= 1e-6
    # scikit-learn, unpenalized (C = inf), multinomial: its W is defined up to the shift, so compare
    # the differences of columns, W[:, j] - W[:, 0]
    sk = linear_model.LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=100,
                                         fit_intercept=False).fit(X, labels).coef_.T
    assert np.max(np.abs(sparse.w - (sk - sk[:, [0]]))) <= 1e-6


def test_penalized_softmax_regression_matches_sklearn(softmax_data):
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, labels, k = softmax_data
    n, l2 = X.shape[0], 1e-3
    result = fit_linear("sparse_softmax_ce", X, labels, l2=l2, tol=1e-11)
    assert result.converged and result.n_iter <= 10 and result.reference_class is None
    # the penalty picks the least-norm W among the equivalent ones: its rows sum to zero
    np.testing.assert_allclose(result.w.sum(axis=1), 0, atol=1e-12)
    assert np.linalg.norm(_full_gradient(X, labels, result.w, l2)) < 1e-11
    # scikit-learn minimizes C sum_i CE_i + |W|^2 / 2, which is n C times ours for C = 1 / (2 n l2)
    sk = linear_model.LogisticRegression(C=1 / (2 * n * l2), solver="newton-cholesky", tol=1e-12,
                                         max_iter=100, fit_intercept=False).fit(X, labels).coef_.T
    assert np.max(np.abs(result.w - sk)) <= 1e-6


def test_reference_class_choice_and_gradient_descent(softmax_data):
    X, labels, k = softmax_data
    default = fit_linear("sparse_softmax_ce", X, labels)
    other = fit_linear("sparse_softmax_ce", X, labels, reference_class=2)
    assert other.reference_class == 2 and np.all(other.w[:, 2] == 0) and other.converged
    # the same model: the same column differences, probabilities and loss
    np.testing.assert_allclose(other.w - other.w[:, [0]], default.w, atol=1e-9)
    assert other.loss == pytest.approx(default.loss, rel=1e-13)
    # a w0 is moved along the shift so that its reference column is zero
    shifted = fit_linear("sparse_softmax_ce", X, labels, w0=default.w + 5.0, max_iter=0)
    assert shifted.loss == pytest.approx(default.loss, rel=1e-13) and np.all(shifted.w[:, 0] == 0)
    # gradient descent in the same parameterization reaches the same solution
    gd = fit_linear("sparse_softmax_ce", X, labels, method="gd", tol=1e-8)
    assert gd.converged and gd.reference_class == 0 and gd.n_iter > 10 * default.n_iter
    np.testing.assert_allclose(gd.w, default.w, atol=1e-5)
    # sum reduction, same coefficients; classes= with a class no sample has, under l2
    total = fit_linear(losscomp.compile("sparse_softmax_ce", reduction="sum"), X, labels, tol=1e-8 * len(labels))
    np.testing.assert_allclose(total.w, default.w, atol=1e-9)
    extra = fit_linear("sparse_softmax_ce", X, labels, classes=k + 1, l2=1e-2)
    assert extra.converged and extra.w.shape == (X.shape[1], k + 1)
    assert np.all(np.argmax(X @ extra.w, axis=1) != k)       # the empty class is never predicted


def test_shift_invariance_is_detected():
    rng = _rng(30)
    X, labels = rng.normal(size=(50, 3)), rng.integers(3, size=50)
    Y = np.eye(3)[labels]
    Z = X @ rng.normal(size=(3, 3))
    for name, y, expected in [("softmax_ce", Y, True), ("sparse_softmax_ce", labels, True),
                              ("softmax_ce_smooth", Y, True), ("categorical_ce", Y, False)]:
        mod = losscomp.compile(name).build("numpy")
        z = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True) if name == "categorical_ce" else Z
        assert losscomp.fit.shift_invariant(mod, [y, z], 1) is expected, name
    # a loss without the invariance fits every column; reference_class is refused for it
    result = fit_linear("softmax_ce_smooth", X, Y)
    assert result.converged and result.reference_class == 0
    with pytest.raises(losscomp.LossOptionError, match="'categorical_ce' changes"):
        fit_linear("categorical_ce", X, Y, reference_class=0, method="gd")


def test_multi_output_elementwise_losses():
    rng = _rng(31)
    n, d, k = 500, 4, 3
    X = np.column_stack([np.ones(n), rng.normal(size=(n, d - 1))])
    Y = X @ rng.normal(size=(d, k)) + rng.normal(size=(n, k))
    # mse over every (sample, output) value, plus l2 |W|^2: one Newton step to the ridge solution
    l2 = 0.1
    result = fit_linear("mse", X, Y, l2=l2)
    closed = np.linalg.solve(X.T @ X / (n * k) + l2 * np.eye(d), X.T @ Y / (n * k))
    assert result.n_iter == 1 and result.w.shape == (d, k)
    np.testing.assert_allclose(result.w, closed, rtol=1e-10, atol=1e-12)
    # multi-label logistic regression: the k columns are k separate fits
    labels = (rng.random((n, k)) < 1 / (1 + np.exp(-X @ rng.normal(size=(d, k))))).astype(np.float64)
    joint = fit_linear("bce_logits", X, labels, tol=1e-10)
    assert joint.converged and joint.reference_class is None
    for j in range(k):
        np.testing.assert_allclose(joint.w[:, j], fit_linear("bce_logits", X, labels[:, j], tol=1e-11).w,
                                   atol=1e-8)
    # a column of zeros in X (an exact zero pivot): the singular Hessian is refused, counted per
    # (sample, output) value
    with pytest.raises(NewtonNotApplicableError, match=r"singular.*0 of 1500 \(sample, output\) values"):
        fit_linear("mse", np.column_stack([X, np.zeros(n)]), Y)


def test_vector_output_refusals():
    rng = _rng(32)
    n, d, k = 60, 3, 3
    X = np.column_stack([np.ones(n), rng.normal(size=(n, d - 1))])
    labels = rng.integers(k, size=n)
    # a reduction over the whole batch: no Newton, gradient descent still runs
    with pytest.raises(NewtonNotApplicableError, match="whole batch") as info:
        fit_linear("dice", X, (labels > 0).astype(np.float64))
    assert "method='gd'" in str(info.value)
    # singular from a zero column of X (not from the shift, which the reference class removes)
    with pytest.raises(NewtonNotApplicableError, match="singular") as info:
        fit_linear("sparse_softmax_ce", np.column_stack([X, np.zeros(n)]), labels)
    assert "Hessian block" in str(info.value) and "dependent columns" in str(info.value)
    cases = [
        (dict(y=labels + 0.5), "class indices, integers from 0 to 2"),
        (dict(y=labels, classes=2), "pass classes= for more classes"),
        (dict(y=labels, w0=np.zeros(d)), "w0 must have shape (3, 3)"),
        (dict(y=labels, reference_class=3), "not one of the 3 classes"),
        (dict(y=labels, reference_class=-1), "reference_class must be"),
        (dict(y=labels, classes=2.5), "classes must be an integer"),
    ]
    for kwargs, text in cases:
        with pytest.raises(losscomp.LossOptionError) as info:
            fit_linear("sparse_softmax_ce", X, **kwargs)
        assert text in str(info.value), (kwargs, str(info.value))
    with pytest.raises(losscomp.LossOptionError, match=r"y of shape \(60, k\), or classes=k"):
        fit_linear("softmax_ce", X, labels)
    with pytest.raises(losscomp.LossOptionError, match=r"must have shape \(60, 4\)"):
        fit_linear("softmax_ce", X, np.eye(k)[labels], classes=4)
    with pytest.raises(losscomp.LossOptionError, match="'mse' is elementwise in its outputs"):
        fit_linear("mse", X, rng.normal(size=(n, k)), reference_class=0)
    with pytest.raises(losscomp.LossOptionError, match="'mse' has one output"):
        fit_linear("mse", X, rng.normal(size=n), reference_class=0)


def test_example_runs(tmp_path):
    pytest.importorskip("matplotlib")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}   # see one_blas_thread
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "newton_vs_gd.py"), "--quick",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "newton_vs_gd.png").stat().st_size > 10_000
    assert "logistic regression" in run.stdout and "newton" in run.stdout
    softmax = [line for line in run.stdout.splitlines() if line.startswith("softmax regression")]
    assert len(softmax) == 3 and softmax[0].split()[-1] == "yes"           # Newton converged
