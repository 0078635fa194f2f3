"""MSE plus an underestimation penalty in Keras: the article's `combined_loss`, as it meant it and as its
code does.

The article ("How can Keras be used to combine custom and existing loss functions?") wants a penalty
on underestimates, 2 (y - y_pred) where the prediction is below the truth. Its code tests `error < 0`
with error = y_true - y_pred, which is an *over*estimate: it penalizes the other side. `losscomp.check`
says so (swapped_arguments), and the two versions train to opposite biases on the article's data:

    meant       mse + underestimation         2 relu(y - y_pred): predictions pushed up
    as written  mse + overestimation          2 relu(y_pred - y): predictions pushed down

Both are built in one line by adding compiled losses, and trained with the generated Keras loss on
the article's model (Dense(1)) and data; the article's own `combined_loss` trains exactly like the
"as written" version. The figure shows the data and the two fitted lines.

    python examples/keras_combined_loss.py [--output DIR] [--fast]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402  (the article's `from tensorflow import keras` lacks losses.mean_squared_error today)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import losscomp  # noqa: E402


# -- the article's code, verbatim (only the docstrings shortened) ----------------------------------

def underestimation_penalty(y_true, y_pred):
    """Custom loss function that penalizes underestimations more harshly."""
    error = y_true - y_pred
    penalty = tf.where(error < 0, -2 * error, tf.zeros_like(error))  # double penalty for underestimations
    return tf.reduce_mean(penalty)


def combined_loss(y_true, y_pred):
    """Combines mean squared error and custom underestimation penalty."""
    mse_loss = keras.losses.mean_squared_error(y_true, y_pred)
    custom_loss = underestimation_penalty(y_true, y_pred)
    total_loss = mse_loss + custom_loss
    return total_loss


X_TRAIN = np.array([[1], [2], [3], [4], [5]], dtype="float32")
Y_TRAIN = np.array([[1.1], [2.2], [2.9], [4.1], [4.8]], dtype="float32")

# -- the two formulas --------------------------------------------------------------------------------

MEANT = losscomp.compile("mse") + losscomp.compile("underestimation")       # 2 relu(y - y_pred)
WRITTEN = losscomp.compile("mse") + losscomp.compile("overestimation(y, y_pred) = 2 * relu(y_pred - y)")


def train(loss, epochs: int, per_epoch: int = 20):
    """`epochs` x `per_epoch` full-batch Adam steps (the five points repeated, in order: one batch is
    the whole data set, as in the article's fit, with less of Keras' per-epoch overhead)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    x, y = np.tile(X_TRAIN, (per_epoch, 1)), np.tile(Y_TRAIN, (per_epoch, 1))
    history = model.fit(x, y, epochs=epochs, batch_size=len(X_TRAIN), shuffle=False, verbose=0)
    return model, history.history["loss"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="directory for the figure (default: a new temporary one)")
    parser.add_argument("--fast", action="store_true", help="fewer epochs and sample points")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="losscomp-keras-combined-"))
    output.mkdir(parents=True, exist_ok=True)
    epochs, points = (5, 1_000) if args.fast else (20, 20_000)

    print("losscomp.check of the article's functions")
    penalty = losscomp.check(underestimation_penalty, "underestimation", points=points)
    print(f"  underestimation_penalty vs underestimation: {penalty.verdict}, {', '.join(penalty.codes)}")
    meant = losscomp.check(combined_loss, MEANT, points=points)
    written = losscomp.check(combined_loss, WRITTEN, points=points)
    for label, report in (("mse + underestimation", meant), ("mse + overestimation", written)):
        parts = "; ".join(f"{c.name}: {c.verdict}" for c in report.comparisons)
        print(f"  combined_loss vs {label}: {parts}")
    print("  (combined_loss adds the penalty's batch mean to every sample's MSE: the batch mean and its gradient\n"
          "   are those of mse + overestimation, the per-sample values are not, so sample weights would apply\n"
          "   to the wrong numbers)")

    losses = {"meant: mse + underestimation": MEANT.build("tensorflow").MsePlusUnderestimationLoss(),
              "as written: mse + overestimation": WRITTEN.build("tensorflow").MsePlusOverestimationLoss(),
              "the article's combined_loss": combined_loss}
    print(f"\ntraining Dense(1) on the article's five points, {20 * epochs} full-batch Adam(0.05) steps")
    fits = {}
    for label, loss in losses.items():
        model, history = train(loss, epochs)
        prediction = model.predict(X_TRAIN, verbose=0)
        bias = float(np.mean(prediction - Y_TRAIN))
        fits[label] = (model, history, prediction)
        print(f"  {label:<34} final loss {history[-1]:.4f}   mean(prediction - y) = {bias:+.3f}")
    same = np.allclose(fits["as written: mse + overestimation"][1], fits["the article's combined_loss"][1], rtol=1e-4)
    print(f"  the article's combined_loss trains as 'mse + overestimation': {same}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(X_TRAIN[:, 0], Y_TRAIN[:, 0], "ko", label="data")
    grid = np.linspace(0.5, 5.5, 50, dtype="float32")[:, None]
    for (label, (model, _, _)), style in zip(fits.items(), ("C3-", "C0-", "k:")):
        ax.plot(grid[:, 0], model.predict(grid, verbose=0)[:, 0], style, label=label)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("MSE + a one-sided penalty: the article's intent and its code")
    ax.legend()
    ax.grid(alpha=0.3)
    figure.tight_layout()
    path = output / "keras_combined_loss.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure: {path}")
    gradient_agrees = all(c.verdict == "agrees" for c in written.comparisons if "GradientTape" in c.name)
    ok = penalty.codes == ["swapped_arguments"] and meant.verdict == "differs" and gradient_agrees and same
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
