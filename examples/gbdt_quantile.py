"""Quantile regression with gradient-boosted trees and a generated objective.

The pinball loss of the catalog, max(tau e, (tau - 1) e) with e = y - y_pred, becomes a LightGBM (or
XGBoost) custom objective through `loss.build("lightgbm")`: per-sample gradients -tau (e > 0) and
1 - tau (e < 0), the derivative of the summed loss. Its second derivative is zero everywhere off the
kink, so the objective takes the constant-Hessian rule (h = 1, the rule of the libraries' own quantile
objectives): each leaf moves by the mean negative gradient, at most max(tau, 1 - tau) x learning_rate
per round in the units of y. The example therefore standardizes y, starts every model from the
unconditional tau-quantile (`init_score`), and fits one model per tau = 0.1, 0.5, 0.9.

The data are heteroscedastic: y = x sin(x) + (0.3 + 0.3 x) noise for x in [0, 10], so the quantile
bands widen with x. It prints, for each tau, the empirical coverage on held-out data (the share of
held-out y below the predicted quantile; it should be close to tau) and the pinball loss, and saves
a plot of the three predicted quantiles over the held-out points.

    python examples/gbdt_quantile.py                          # examples/out/gbdt_quantile.png
    python examples/gbdt_quantile.py -o quantiles.png --library xgboost
    python examples/gbdt_quantile.py --quick                  # fewer samples and rounds
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import losscomp

TAUS = (0.1, 0.5, 0.9)
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "out" / "gbdt_quantile.png"


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x uniform on [0, 10] (one feature) and y = x sin(x) + (0.3 + 0.3 x) * N(0, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, size=n)
    y = x * np.sin(x) + (0.3 + 0.3 * x) * rng.normal(size=n)
    return x[:, None], y


def fit_quantile(library: str, tau: float, X: np.ndarray, y: np.ndarray, rounds: int,
                 learning_rate: float):
    """A boosted model of the tau-quantile of y (standardized) given X, with the generated objective.
    Returns predict(X) -> the tau-quantile in the units of y. One thread (n_jobs=1): with one feature
    and a few thousand rows, more threads only wait for each other."""
    loss = losscomp.compile("pinball", params={"tau": tau})
    objective = loss.build(library)
    center, scale = float(np.mean(y)), float(np.std(y))
    z = (y - center) / scale
    start = objective.init_score(z)                        # the unconditional tau-quantile of z
    if library == "lightgbm":
        import lightgbm as lgb
        model = lgb.LGBMRegressor(objective=objective.sklearn_objective, n_estimators=rounds,
                                  learning_rate=learning_rate, num_leaves=8, min_child_samples=20,
                                  random_state=0, n_jobs=1, verbose=-1)
        model.fit(X, z, init_score=np.full(z.shape, start))
        return lambda Xnew: center + scale * (start + model.predict(Xnew, raw_score=True))
    import xgboost as xgb
    model = xgb.XGBRegressor(objective=objective.sklearn_objective, n_estimators=rounds,
                             learning_rate=learning_rate, max_depth=3, base_score=start,
                             tree_method="hist", random_state=0, n_jobs=1)
    model.fit(X, z)
    return lambda Xnew: center + scale * model.predict(Xnew, output_margin=True)


def pinball(tau: float, y: np.ndarray, q: np.ndarray) -> float:
    e = y - q
    return float(np.mean(np.maximum(tau * e, (tau - 1) * e)))


def plot(path: Path, X: np.ndarray, y: np.ndarray, predictions: dict[float, np.ndarray],
         coverage: dict[float, float], library: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(X[:, 0])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.scatter(X[:, 0], y, s=3, color="0.7", label="held-out data")
    for tau, color in zip(TAUS, ("tab:blue", "tab:green", "tab:red")):
        ax.plot(X[order, 0], predictions[tau][order], color=color, lw=1.5,
                label=f"tau = {tau}: coverage {coverage[tau]:.3f}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(f"Quantile GBDT ({library}) with the generated pinball objective")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[float, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="where to save the plot")
    parser.add_argument("--library", choices=("lightgbm", "xgboost"), default="lightgbm")
    parser.add_argument("--quick", action="store_true", help="fewer samples and rounds (a smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    n_train, n_test, rounds = (4000, 20000, 300) if args.quick else (20000, 20000, 300)
    X, y = make_data(n_train, args.seed)
    X_test, y_test = make_data(n_test, args.seed + 1)
    predictions, coverage = {}, {}
    print(f"{'tau':>5} {'coverage':>9} {'|cov - tau|':>12} {'pinball':>9} {'seconds':>8}")
    for tau in TAUS:
        start = time.perf_counter()
        predict = fit_quantile(args.library, tau, X, y, rounds, learning_rate=0.3)
        predictions[tau] = predict(X_test)
        coverage[tau] = float(np.mean(y_test <= predictions[tau]))
        print(f"{tau:5.2f} {coverage[tau]:9.4f} {abs(coverage[tau] - tau):12.4f} "
              f"{pinball(tau, y_test, predictions[tau]):9.4f} {time.perf_counter() - start:8.2f}")
    plot(args.output, X_test, y_test, predictions, coverage, args.library)
    print(f"plot: {args.output}")
    return coverage


if __name__ == "__main__":
    main()
