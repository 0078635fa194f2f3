"""L1, L2 and elastic net regularization of a linear model, with `losscomp.fit_linear`.

The encyclopedia entry's `regularized_loss(loss_func, w, l1, l2)` computes the penalty once, from the
w it is given, and returns `lambda y, yp: loss_func(y, yp) + l1_penalty + l2_penalty`: a constant
added to the loss. Its gradient by the predictions is the unregularized one, so it regularizes
nothing. `losscomp.check` says exactly that: the function differs from mse by a constant offset.
(The same holds for its elastic_net_loss.)

`fit_linear` puts the penalty where it belongs, on the coefficients: l1 |w|_1 + l2 |w|^2 (elastic net
is l1 = alpha l1_ratio, l2 = alpha (1 - l1_ratio)), by Newton's method with the generated Hessian for
ridge, by proximal gradient descent when there is an L1 part. On 20 correlated features of which 5
matter, the script prints the fitted coefficients' error and how many are exactly zero; the figure
shows the coefficients of each fit.

    python examples/regularization.py [--output DIR] [--fast]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import losscomp


def mean_squared_error(y_true, y_pred):
    """The entry's MSE."""
    return np.mean((y_true - y_pred) ** 2)


def regularized_loss(loss_func, w, l1=0.0, l2=0.0):
    """The entry's regularized_loss, verbatim: the penalty is computed once, from this w."""
    l1_penalty = l1 * np.sum(np.abs(w))
    l2_penalty = l2 * np.sum(w ** 2)
    return lambda y, yp: loss_func(y, yp) + l1_penalty + l2_penalty


def data(n: int, rng: np.random.Generator):
    d = 20
    mixing = np.eye(d) + 0.4 * rng.normal(size=(d, d)) / np.sqrt(d)
    X = rng.normal(size=(n, d)) @ mixing
    w = np.zeros(d)
    w[[1, 4, 7, 11, 15]] = [2.0, -1.5, 1.0, 0.8, -0.6]
    return X, X @ w + 0.8 * rng.normal(size=n), w


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="directory for the figure (default: a new temporary one)")
    parser.add_argument("--fast", action="store_true", help="fewer samples and sample points")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="losscomp-regularization-"))
    output.mkdir(parents=True, exist_ok=True)
    n, points = (100, 1_000) if args.fast else (200, 20_000)

    rng = np.random.default_rng(0)
    w_now = rng.normal(size=5)
    report = losscomp.check(regularized_loss(mean_squared_error, w_now, l1=0.1, l2=0.01), "mse", points=points)
    offset = 0.1 * np.abs(w_now).sum() + 0.01 * (w_now ** 2).sum()
    print(f"the entry's regularized_loss(mean_squared_error, w, l1=0.1, l2=0.01) vs mse: {report.verdict}, "
          f"{', '.join(report.codes)}")
    for diagnosis in report.diagnosis:
        print(f"  {diagnosis.message}")
    print(f"  (the penalty of the w it was given: {offset:.6g}, the same for every prediction)")

    X, y, w_true = data(n, rng)
    alpha, ratio = 0.1, 0.5
    settings = {
        "least squares": dict(method="newton"),
        "ridge (l2 = 0.1)": dict(method="newton", l2=0.1),
        "lasso (l1 = 0.1)": dict(method="gd", l1=0.1),
        f"elastic net (alpha {alpha}, l1_ratio {ratio})": dict(method="gd", l1=alpha * ratio, l2=alpha * (1 - ratio)),
    }
    fits = {label: losscomp.fit_linear("mse", X, y, **options) for label, options in settings.items()}
    print(f"\n{n} samples, 20 features, 5 of them in the model:")
    print(f"  {'fit':<38} {'method':<7} {'iterations':>10} {'|w - w_true|':>13} {'zeros':>6}")
    for label, result in fits.items():
        print(f"  {label:<38} {settings[label]['method']:<7} {result.n_iter:>10} "
              f"{np.linalg.norm(result.w - w_true):>13.4f} {int(np.sum(result.w == 0)):>6}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(10, 4.5))
    index = np.arange(len(w_true))
    width = 0.16
    ax.bar(index - 2 * width, w_true, width, color="k", label="true")
    for offset_index, (label, result) in enumerate(fits.items(), start=-1):
        ax.bar(index + offset_index * width, result.w, width, label=label)
    ax.set_xlabel("coefficient")
    ax.set_ylabel("value")
    ax.set_title("Linear model coefficients: least squares, ridge, lasso, elastic net (fit_linear)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    path = output / "regularization.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure: {path}")
    return 0 if "constant_offset" in report.codes else 1


if __name__ == "__main__":
    sys.exit(main())
