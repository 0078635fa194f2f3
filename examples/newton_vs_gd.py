"""Newton's method against gradient descent, redone with losscomp.

The seed article compares gradient descent with a Newton method built on a hand-written MSE Hessian
and an explicit matrix inverse. Here every gradient and Hessian comes from the compiled loss
(`newton_hessian` = X^T diag(l'') X / n), Newton's step is a Cholesky solve with an Armijo line
search, and the comparison covers five problems:

    least squares            mse                y = X w + noise
    logistic regression      bce_logits         y ~ Bernoulli(sigmoid(X w))
    Poisson regression       poisson_nll        y ~ Poisson(exp(X w))
    Huber robust regression  huber              least squares data with 10% gross outliers
    softmax regression       sparse_softmax_ce  y ~ Categorical(softmax(X W)), k = 4 classes

Softmax regression has a (d, k) coefficient matrix W and the Hessian sum_i (x_i x_i^T) (x) H_i / n
of size d k; without a penalty its class 0 is the reference class (W[:, 0] = 0), since softmax does
not change when a constant is added to every logit.

For each, three runs from w = 0: damped Newton, gradient descent with backtracking, and gradient
descent at the seed's fixed learning rate 0.01. It prints a table and saves the suboptimality
F(w_k) - F* against the iteration as newton_vs_gd.png in --output DIR (default: a new temporary
directory), with a sixth panel that shows the gradient norm of the five Newton runs: the last steps
are quadratically convergent.

    python examples/newton_vs_gd.py            # n = 10000, d = 20, 1000 gradient steps
    python examples/newton_vs_gd.py --fast     # n = 2000, d = 10, fewer iterations (also --quick)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import losscomp

TOL = 1e-10
SEED_LEARNING_RATE = 0.01     # the seed's gradient_descent default


CLASSES = 4


def problems(n: int, d: int, seed: int = 0):
    """(title, loss, params, X, y) for the five problems, with an intercept column in X."""
    rng = np.random.default_rng(seed)
    # features as they come: correlated, on scales from 0.1 to 3 (the Hessian's condition number is
    # about 10^3, which slows gradient descent and leaves Newton's method, affine invariant, as it is)
    scales = np.logspace(-1, 0.5, d - 1)
    mixing = np.eye(d - 1) + 0.3 * rng.normal(size=(d - 1, d - 1)) / np.sqrt(d)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, d - 1)) @ mixing * scales])
    w_true = rng.normal(scale=1 / np.sqrt(d), size=d) / np.concatenate([[1.0], scales])
    eta = X @ w_true
    y_ls = eta + 0.5 * rng.normal(size=n)
    y_logit = (rng.random(n) < 1 / (1 + np.exp(-2 * eta))).astype(np.float64)
    y_count = rng.poisson(np.exp(0.5 * eta)).astype(np.float64)
    y_robust = y_ls.copy()
    bad = rng.choice(n, size=n // 10, replace=False)
    y_robust[bad] += rng.uniform(5, 15, size=bad.size)
    W_true = rng.normal(scale=1 / np.sqrt(d), size=(d, CLASSES)) / np.concatenate([[1.0], scales])[:, None]
    logits = 2 * X @ W_true
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    y_class = (rng.random(n)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)      # class indices 0..k-1
    return [
        ("least squares", "mse", {}, X, y_ls),
        ("logistic regression", "bce_logits", {}, X, y_logit),
        ("Poisson regression", "poisson_nll", {}, X, y_count),
        ("Huber robust regression", "huber", {"delta": 1.0}, X, y_robust),
        (f"softmax regression (k={CLASSES})", "sparse_softmax_ce", {}, X, y_class),
    ]


def run(loss, params, X, y, method, **options):
    """A fit and its time in seconds (the loss is compiled and built beforehand, see main)."""
    start = time.perf_counter()
    result = losscomp.fit_linear(loss, X, y, method=method, params=params, tol=TOL, **options)
    return result, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", "--fast", dest="quick", action="store_true",
                        help="a smaller problem and fewer iterations")
    parser.add_argument("--output", "--out", dest="out", type=Path,
                        help="directory for the PNG (default: a new temporary one)")
    args = parser.parse_args(argv)
    args.out = args.out or Path(tempfile.mkdtemp(prefix="losscomp-newton-"))
    n, d, gd_iter = (2_000, 10, 300) if args.quick else (10_000, 20, 1_000)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {
        "newton (Cholesky, Armijo)": dict(method="newton"),
        "gd (backtracking)": dict(method="gd", max_iter=gd_iter),
        f"gd (fixed step {SEED_LEARNING_RATE})": dict(method="gd", step_size=SEED_LEARNING_RATE, max_iter=gd_iter),
    }
    styles = {"newton": dict(color="C3", marker="o", lw=2), "gd (b": dict(color="C0", lw=1.5),
              "gd (f": dict(color="C7", lw=1.5, ls="--")}

    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5), constrained_layout=True)
    rows = []
    newton_norms = []
    for ax, (title, loss, params, X, y) in zip(axes.flat, problems(n, d)):
        losscomp.fit_linear(loss, X, y, params=params, max_iter=1)    # compile, build, import outside the timings
        results = {label: run(loss, params, X, y, **options) for label, options in runs.items()}
        best = min(r.losses.min() for r, _ in results.values())
        for label, (result, seconds) in results.items():
            gap = np.maximum(result.losses - best, 1e-16)
            style = next(s for key, s in styles.items() if label.startswith(key))
            ax.plot(np.arange(gap.size), gap, label=f"{label}: {result.n_iter} it.",
                    markersize=4, **style)
            rows.append((title, label, result.n_iter, result.loss, result.grad_norm, seconds,
                         "yes" if result.converged else "no"))
            if label.startswith("newton"):
                newton_norms.append((title, result.grad_norms))
        ax.set_xscale("symlog", linthresh=10)
        ax.set_yscale("log")
        ax.set_ylim(1e-16, None)
        size = f"d={d}" if result.w.ndim == 1 else f"d={d}, k={result.w.shape[1]}"
        ax.set_title(f"{title}\n{loss}, n={n}, {size}", fontsize=10)
        ax.set_xlabel("iteration (linear to 10, then log)")
        ax.set_ylabel("F(w_k) - F*")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    ax = axes.flat[len(newton_norms)]
    for index, (title, norms) in enumerate(newton_norms):
        ax.plot(np.arange(norms.size), norms, marker="o", markersize=4, lw=1.5, color=f"C{index}", label=title)
    ax.axhline(TOL, color="k", lw=0.8, ls=":", label=f"tol = {TOL:g}")
    ax.set_yscale("log")
    ax.set_title("Newton's method: gradient norm per iteration\n(all five problems)", fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel("|grad F(w_k)|")
    ax.grid(True, which="major", alpha=0.3)
    top = max(float(np.max(norms)) for _, norms in newton_norms)
    ax.set_ylim(None, top * 1e6)                  # room for the legend above the curves
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    fig.suptitle("Newton's method with losscomp's generated Hessian vs gradient descent")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "newton_vs_gd.png"
    fig.savefig(path, dpi=110)

    header = f"{'problem':<24} {'method':<28} {'iters':>6} {'final loss':>18} {'|grad|':>9} {'time s':>7}  conv."
    print(header)
    print("-" * len(header))
    for title, label, iters, value, norm, seconds, converged in rows:
        print(f"{title:<24} {label:<28} {iters:>6} {value:>18.12g} {norm:>9.2e} {seconds:>7.3f}  {converged}")
    print(f"\nplot: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
