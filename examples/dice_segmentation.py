"""Dice loss for a toy image segmentation in Keras.

The encyclopedia entry's dice_loss flattens the whole batch before summing, which is the catalog's
dice (its sums run over axis=all): `losscomp.check` says they agree. Its example model does not run
as printed (Conv2D and MaxPooling2D are used without an import) and, with two unpadded 3x3
convolutions and two poolings, would give a 30 x 30 mask for a 128 x 128 image, so the flattened
prediction and truth would not even have one length. The model here keeps the image size ('same'
padding, no pooling).

Images of 32 x 32 pixels hold one bright disk in noise; a three-layer convolutional network learns the
disk's mask with the generated DiceLoss and, for comparison, with the generated binary cross-entropy.
The script prints the held-out intersection over union; the figure shows a test image, its mask and
both predictions.

    python examples/dice_segmentation.py [--output DIR] [--fast]
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

SIZE = 32


def dice_loss(y_true, y_pred, smooth=1.0):
    """The encyclopedia entry's Dice loss, verbatim."""
    y_true_f = tf.reshape(y_true, [-1])
    y_pred_f = tf.reshape(y_pred, [-1])
    intersection = tf.reduce_sum(y_true_f * y_pred_f)
    return 1 - (2. * intersection + smooth) / (tf.reduce_sum(y_true_f) + tf.reduce_sum(y_pred_f) + smooth)


def images(n: int, rng: np.random.Generator):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    centre = rng.uniform(8, SIZE - 8, size=(n, 2))
    radius = rng.uniform(3, 8, size=n)
    masks = ((yy[None] - centre[:, :1, None]) ** 2 + (xx[None] - centre[:, 1:, None]) ** 2
             <= radius[:, None, None] ** 2).astype("float32")
    pictures = masks + 0.6 * rng.normal(size=masks.shape)
    return pictures[..., None].astype("float32"), masks[..., None]


def train(loss, x, y, epochs: int) -> keras.Model:
    keras.utils.set_random_seed(8)
    model = keras.Sequential([keras.Input(shape=(SIZE, SIZE, 1)),
                              keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                              keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                              keras.layers.Conv2D(1, 1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def iou(mask: np.ndarray, predicted: np.ndarray) -> float:
    hit = predicted > 0.5
    return float(np.sum(hit & (mask > 0.5)) / max(np.sum(hit | (mask > 0.5)), 1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="directory for the figure (default: a new temporary one)")
    parser.add_argument("--fast", action="store_true", help="fewer images and epochs")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="losscomp-dice-"))
    output.mkdir(parents=True, exist_ok=True)
    n, epochs, points = (256, 6, 1_000) if args.fast else (1_024, 20, 20_000)

    report = losscomp.check(dice_loss, "dice", points=points)
    print(f"the entry's dice_loss vs the catalog's dice (sums over axis=all): {report.verdict}")

    rng = np.random.default_rng(0)
    x, y = images(n, rng)
    x_test, y_test = images(128, rng)
    losses = {"Dice": losscomp.compile("dice").build("tensorflow").DiceLoss(),
              "binary cross-entropy": losscomp.compile("bce").build("tensorflow").BceLoss()}
    predictions = {}
    print(f"training on {n} images of {SIZE} x {SIZE}, {epochs} epochs")
    for label, loss in losses.items():
        predicted = train(loss, x, y, epochs).predict(x_test, verbose=0)
        predictions[label] = predicted
        print(f"  {label:<22} held-out IoU {iou(y_test, predicted):.3f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("image", x_test[0, ..., 0]), ("mask", y_test[0, ..., 0])] + \
        [(f"{label} prediction", p[0, ..., 0]) for label, p in predictions.items()]
    figure, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    for ax, (title, picture) in zip(axes, panels):
        ax.imshow(picture, cmap="gray")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    figure.tight_layout()
    path = output / "dice_segmentation.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure: {path}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
