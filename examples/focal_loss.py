"""Focal loss for an imbalanced binary problem in Keras, and what `check` says about two focal losses.

The encyclopedia entry's `focal_loss()` keeps only the positive-class term, -alpha (1 - p)^gamma y log p,
and clips p at 1e-7. `losscomp.check` tells both apart: against that positive-only formula it differs
only by the clip (clipped_gradient, where y = 1 and p < 1e-7); against the focal loss of Lin et al.
(the catalog's binary_focal, which also has the (1 - alpha) p^gamma (1 - y) log(1 - p) term) it
differs at every y = 0, where it returns 0 (check's worst points show it; its diagnosis reads the flat
result as a clip). Keras' own BinaryFocalCrossentropy(apply_class_balancing=True) is the catalog's
formula except at its clip, p < 1e-7 where y = 1 and p > 1 - 1e-6 where y = 0.

Then two logistic models (a small hidden layer) learn a 5%-positive problem, one with the generated
binary cross-entropy and one with the generated focal loss; the script prints the average precision
and the recall of the positives at threshold 0.5 on held-out data. The figure shows the focal loss
against p for y = 1 at several gamma (the picture of Lin et al.), computed by the generated NumPy
code, and the precision-recall curves.

    python examples/focal_loss.py [--output DIR] [--fast]
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

POSITIVE_ONLY = "focal(y: binary, p: unit; gamma = 2, alpha = 0.25) = -alpha * (1 - p)^gamma * y * log(p)"


def focal_loss(gamma=2.0, alpha=0.25):
    """The encyclopedia entry's focal loss, verbatim."""
    def loss(y_true, y_pred):
        y_pred = tf.clip_by_value(y_pred, 1e-7, 1 - 1e-7)
        cross_entropy = -y_true * tf.math.log(y_pred)
        loss = alpha * tf.pow(1 - y_pred, gamma) * cross_entropy
        return tf.reduce_mean(loss)
    return loss


def data(n: int, rng: np.random.Generator):
    y = (rng.random(n) < 0.05).astype("float32")
    x = rng.normal(size=(n, 2)) + np.where(y[:, None] == 1, [1.6, 1.2], [0.0, 0.0])
    return x.astype("float32"), y


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    order = np.argsort(-score)
    hits = y[order]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(np.sum(precision * hits) / max(hits.sum(), 1))


def precision_recall(y: np.ndarray, score: np.ndarray):
    order = np.argsort(-score)
    hits = y[order]
    tp = np.cumsum(hits)
    return tp / np.arange(1, len(hits) + 1), tp / max(hits.sum(), 1)


def train(loss, x, y, epochs: int) -> keras.Model:
    keras.utils.set_random_seed(4)
    model = keras.Sequential([keras.Input(shape=(2,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="directory for the figure (default: a new temporary one)")
    parser.add_argument("--fast", action="store_true", help="fewer points and epochs")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="losscomp-focal-"))
    output.mkdir(parents=True, exist_ok=True)
    n, epochs, points = (6_000, 6, 1_000) if args.fast else (20_000, 20, 20_000)

    checks = [("the entry's focal_loss()", focal_loss(), POSITIVE_ONLY, "focal, positive term only"),
              ("the entry's focal_loss()", focal_loss(), "binary_focal", "binary_focal (Lin et al.)"),
              ("keras BinaryFocalCrossentropy", keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True),
               "binary_focal", "binary_focal (Lin et al.)")]
    for label, fn, against, text in checks:
        report = losscomp.check(fn, against, points=points)
        codes = f" ({', '.join(report.codes)})" if report.codes else ""
        print(f"{label:<30} vs {text:<28} {report.verdict}{codes}")
        for c in report.comparisons:
            print(f"    {c.name}: {c.mismatches} of {c.points} differ")

    rng = np.random.default_rng(0)
    x, y = data(n, rng)
    x_test, y_test = data(20_000, rng)
    losses = {"binary cross-entropy": losscomp.compile("bce").build("tensorflow").BceLoss(),
              "focal (gamma 2, alpha 0.25)": losscomp.compile("binary_focal").build("tensorflow").BinaryFocalLoss()}
    print(f"\n{int(y.sum())} positives of {n}; held-out: {int(y_test.sum())} of {len(y_test)}")
    scores = {}
    for label, loss in losses.items():
        score = train(loss, x, y, epochs).predict(x_test, verbose=0)[:, 0]
        scores[label] = score
        recall = float(np.mean(score[y_test == 1] > 0.5))
        print(f"  {label:<28} average precision {average_precision(y_test, score):.3f}   "
              f"recall at 0.5 {recall:.3f}   mean p on negatives {float(np.mean(score[y_test == 0])):.3f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    focal = losscomp.compile("binary_focal", reduction="none").build("numpy")
    p = np.linspace(0.01, 0.99, 197)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for gamma in (0, 0.5, 1, 2, 5):
        left.plot(p, focal.loss(np.ones_like(p), p, gamma=gamma, alpha=1.0), label=f"gamma = {gamma}")
    left.set_xlabel("probability of the true class")
    left.set_ylabel("loss (alpha = 1)")
    left.set_title("Focal loss, y = 1 (the generated NumPy code)")
    left.legend()
    for label, score in scores.items():
        precision, recall = precision_recall(y_test, score)
        right.plot(recall, precision, label=f"{label} (AP {average_precision(y_test, score):.3f})")
    right.set_xlabel("recall")
    right.set_ylabel("precision")
    right.set_title("Held-out precision-recall")
    right.legend()
    figure.tight_layout()
    path = output / "focal_loss.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
