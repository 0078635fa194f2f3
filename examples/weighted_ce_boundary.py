"""Weighted categorical cross-entropy plus 0.2 times a boundary loss, for a toy 1-D segmentation in Keras.

The Keras article's second example adds a "boundary disagreement" to categorical cross-entropy:
|true edges - predicted edges| with edges |y[..., :-1] - y[..., 1:]|. Two things in its code:

  - `[..., :-1]` slices the *last* axis, which is the class axis of one-hot labels (N, ..., C): the
    "edges" compare neighbouring classes, not neighbouring positions, so the term measures a class
    mismatch per position and cannot see where a boundary is. Below, a prediction with every
    boundary in place but the wrong classes scores high on it and low along positions; one with
    the right classes and scattered single-position flips scores the other way round.
  - keras.losses.categorical_crossentropy rescales y_pred to sum to 1 and clips it at 1e-7:
    `losscomp.check` finds its gradient by the probabilities off by a constant 1 (the derivative of
    the rescaling) and its values held at the clip.

Here the pointwise parts are written in the loss language and compiled (values, gradients and
Hessians exact), and the framework does what the language has no word for, the shift along
positions:

    weighted_ce(y: simplex, p: unit, w: positive[class]) = -sum(w * y * log(p), axis=-1)
    boundary(tb, pb) = abs(tb - pb)

A Conv1D network labels each of 48 positions with one of 3 classes (the third rare, weight 4); it is
trained with the weighted cross-entropy alone and with the boundary term added; the script prints the
accuracy per class and counts the predicted label changes against the true ones.

    python examples/weighted_ce_boundary.py [--output DIR] [--fast]
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

CLASSES, LENGTH = 3, 48
WEIGHTS = np.array([1.0, 1.0, 4.0], dtype="float32")     # the rare third class counts four times
WEIGHTED_CE = losscomp.compile(
    "weighted_ce(y: simplex, p: unit, w: positive[class]) = -sum(w * y * log(p), axis=-1)").build("tensorflow")
BOUNDARY = losscomp.compile("boundary(tb, pb) = abs(tb - pb)").build("tensorflow")


def article_boundary(y_true, y_pred):
    """The article's boundary_disagreement, verbatim: the edges run along the last (class) axis."""
    y_true = tf.cast(y_true, tf.float32)
    y_pred = tf.cast(y_pred, tf.float32)
    true_boundary = tf.abs(y_true[..., :-1] - y_true[..., 1:])
    pred_boundary = tf.abs(y_pred[..., :-1] - y_pred[..., 1:])
    return tf.reduce_mean(tf.abs(true_boundary - pred_boundary))


def position_boundary(y_true, y_pred):
    """The boundary term as meant: edges between neighbouring positions (axis 1), per sample."""
    tb = tf.abs(y_true[:, 1:] - y_true[:, :-1])
    pb = tf.abs(y_pred[:, 1:] - y_pred[:, :-1])
    return tf.reduce_mean(BOUNDARY.values(tb, pb), axis=[1, 2])


class SegmentationLoss(keras.losses.Loss):
    """Per sample: the mean over positions of the weighted cross-entropy, plus `weight` times the
    boundary term along positions. Keras averages over the batch (and applies sample weights)."""

    def __init__(self, weight=0.2, **kwargs):
        super().__init__(**kwargs)
        self.weight = weight

    def call(self, y_true, y_pred):
        ce = WEIGHTED_CE.values(y_true, y_pred, tf.constant(WEIGHTS, y_pred.dtype))   # (N, L, 1)
        total = tf.reduce_mean(ce, axis=[1, 2])
        if self.weight:
            total = total + self.weight * position_boundary(y_true, y_pred)
        return total


def segments(n: int, rng: np.random.Generator):
    """Labels in runs of 4 to 16 positions (class 2 rare), and noisy features that show them."""
    labels = np.empty((n, LENGTH), dtype=int)
    for row in labels:
        start = 0
        while start < LENGTH:
            run = rng.integers(4, 17)
            row[start:start + run] = rng.choice(CLASSES, p=[0.45, 0.45, 0.10])
            start += run
    centres = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    x = centres[labels] + 0.9 * rng.normal(size=(n, LENGTH, 2))
    return x.astype("float32"), np.eye(CLASSES, dtype="float32")[labels]


def model_for(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(shape=(LENGTH, 2)),
        keras.layers.Conv1D(16, 5, padding="same", activation="relu"),
        keras.layers.Conv1D(16, 5, padding="same", activation="relu"),
        keras.layers.Conv1D(CLASSES, 1, activation="softmax"),
    ])


def changes(labels: np.ndarray) -> float:
    """Label changes per sequence."""
    return float(np.mean(np.sum(labels[:, 1:] != labels[:, :-1], axis=1)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="directory for the figure (default: a new temporary one)")
    parser.add_argument("--fast", action="store_true", help="fewer sequences and epochs")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="losscomp-segmentation-"))
    output.mkdir(parents=True, exist_ok=True)
    n, epochs, points = (400, 8, 1_000) if args.fast else (2_000, 25, 20_000)
    rng = np.random.default_rng(0)
    x, y = segments(n, rng)
    x_test, y_test = segments(400, rng)

    report = losscomp.check(keras.losses.categorical_crossentropy,
                            "cce(y: simplex, p: simplex) = -sum(y * log(p))", points=points)
    codes = f" ({', '.join(report.codes)})" if report.codes else ""
    print(f"keras.losses.categorical_crossentropy vs -sum(y log p): {report.verdict}{codes}")
    for comparison in report.comparisons:
        print(f"  {comparison.name}: {comparison.verdict} ({comparison.mismatches} of {comparison.points} points)")

    truth_labels = np.argmax(y_test, axis=-1)
    relabeled = np.eye(CLASSES, dtype="float32")[(truth_labels + 1) % CLASSES]   # every boundary in place
    flips = rng.random(truth_labels.shape) < 0.05                                  # 5% single-position flips
    noisy = np.eye(CLASSES, dtype="float32")[np.where(flips, (truth_labels + 1) % CLASSES, truth_labels)]
    print("\nthe boundary term of two one-hot predictions:")
    print(f"  {'prediction':<46} {'article (class axis)':>20} {'along positions':>16}")
    for label, prediction in (("every segment relabeled, boundaries in place", relabeled),
                              ("right classes, 5% single-position flips", noisy)):
        article = float(article_boundary(tf.constant(y_test), tf.constant(prediction)))
        along = float(tf.reduce_mean(position_boundary(tf.constant(y_test), tf.constant(prediction))))
        print(f"  {label:<46} {article:>20.4f} {along:>16.4f}")
    print("  (the article's term measures class mismatch per position; it does not see boundaries)")

    print(f"\ntraining a Conv1D labeller on {n} sequences, {epochs} epochs")
    results = {}
    for label, weight in (("weighted CE", 0.0), ("weighted CE + 0.2 boundary", 0.2)):
        model = model_for(1)
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=SegmentationLoss(weight))
        history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
        predicted = np.argmax(model.predict(x_test, verbose=0), axis=-1)
        accuracy = [float(np.mean(predicted[truth_labels == c] == c)) for c in range(CLASSES)]
        results[label] = predicted
        print(f"  {label:<28} loss {history.history['loss'][-1]:.4f}  accuracy per class "
              f"{', '.join(f'{a:.3f}' for a in accuracy)}  label changes {changes(predicted):.2f} "
              f"(true {changes(truth_labels):.2f})")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(3, 1, figsize=(9, 4.5), sharex=True)
    rows = [("truth", np.argmax(y_test, axis=-1))] + list(results.items())
    for ax, (label, labels) in zip(axes, rows):
        ax.imshow(labels[:1], aspect="auto", cmap="viridis", vmin=0, vmax=CLASSES - 1)
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    axes[-1].set_xlabel("position")
    figure.suptitle("Segmentation of a test sequence")
    figure.tight_layout()
    path = output / "weighted_ce_boundary.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
