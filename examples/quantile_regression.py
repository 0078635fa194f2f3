"""Quantile regression at tau = 0.9 in Keras, with the generated pinball loss, and its coverage.

The encyclopedia entry compiles a model with `lambda yt, yp: quantile_loss(yt, yp, 0.9)`. Here the
catalog's pinball loss, `max(tau e, (tau - 1) e)` with e = y - y_pred, is compiled into a Keras loss
(`PinballLoss(tau=0.9)`), and `losscomp.check` confirms the entry's function is the same loss (it
differs only in the subgradient at e = 0, where tf.maximum gives the whole gradient to one side).

A small network learns the 0.1, 0.5 and 0.9 quantiles of heteroscedastic data, y = sin(2x) + (0.2 +
0.5 |x|) noise. On held-out data the share of points below the 0.9 curve should be close to 0.9, in
every region of x, not only on average: the figure shows the curves and the coverage per bin of x.

    python examples/quantile_regression.py [--output DIR] [--fast]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import losscomp  # noqa: E402

PINBALL = losscomp.compile("pinball").build("tensorflow")
TAUS = (0.1, 0.5, 0.9)


def quantile_loss(y_true, y_pred, quantile=0.5):
    """The encyclopedia entry's quantile loss, verbatim."""
    error = y_true - y_pred
    return tf.reduce_mean(tf.maximum(quantile * error, (quantile - 1) * error))


def data(n: int, rng: np.random.Generator):
    x = rng.uniform(-2, 2, size=(n, 1)).astype("float32")
    y = (np.sin(2 * x[:, 0]) + (0.2 + 0.5 * np.abs(x[:, 0])) * rng.normal(size=n)).astype("float32")
    return x, y   # y of shape (n,): Keras' rank matching meets the (n, 1) output


def fit_quantile(tau: float, x, y, epochs: int) -> keras.Model:
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(32, activation="tanh"),
                              keras.layers.Dense(32, activation="tanh"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=PINBALL.PinballLoss(tau=tau))
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="directory for the figure (default: a new temporary one)")
    parser.add_argument("--fast", action="store_true", help="fewer points and epochs")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="losscomp-quantile-"))
    output.mkdir(parents=True, exist_ok=True)
    n, epochs, points = (2_000, 12, 1_000) if args.fast else (8_000, 40, 20_000)
    rng = np.random.default_rng(0)
    x, y = data(n, rng)
    x_test, y_test = data(4_000, rng)

    report = losscomp.check(lambda yt, yp: quantile_loss(yt, yp, 0.9), "pinball", params={"tau": 0.9},
                            points=points)
    print(f"the entry's quantile_loss(yt, yp, 0.9) vs pinball(tau=0.9): {report.verdict}")

    models = {tau: fit_quantile(tau, x, y, epochs) for tau in TAUS}
    curves = {tau: models[tau].predict(x_test, verbose=0)[:, 0] for tau in TAUS}
    print(f"\nheld-out share of points below each quantile curve ({len(y_test)} points):")
    for tau in TAUS:
        print(f"  tau = {tau}: {np.mean(y_test <= curves[tau]):.3f}")
    bins = np.linspace(-2, 2, 9)
    which = np.digitize(x_test[:, 0], bins[1:-1])
    per_bin = np.array([np.mean(y_test[which == b] <= curves[0.9][which == b]) for b in range(len(bins) - 1)])
    print("  tau = 0.9 per bin of x: " + " ".join(f"{c:.2f}" for c in per_bin))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.scatter(x_test[:, 0], y_test, s=3, color="0.7", label="held-out data")
    order = np.argsort(x_test[:, 0])
    for tau, color in zip(TAUS, ("C0", "C2", "C3")):
        left.plot(x_test[order, 0], curves[tau][order], color=color, lw=2, label=f"tau = {tau}")
    left.set_xlabel("x")
    left.set_ylabel("y")
    left.set_title("Quantile curves from the generated PinballLoss")
    left.legend()
    centres = (bins[:-1] + bins[1:]) / 2
    right.bar(centres, per_bin, width=0.4, color="C3", alpha=0.7, label="share below the 0.9 curve")
    right.axhline(0.9, color="k", ls="--", lw=1, label="0.9")
    right.set_ylim(0.5, 1.0)
    right.set_xlabel("x (bins)")
    right.set_ylabel("coverage")
    right.set_title("Coverage of the 0.9 quantile, held-out data")
    right.legend(loc="lower right")
    figure.tight_layout()
    path = output / "quantile_regression.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure: {path}")
    coverage = float(np.mean(y_test <= curves[0.9]))
    return 0 if report.ok and abs(coverage - 0.9) < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
