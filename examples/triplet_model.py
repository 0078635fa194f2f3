"""A triplet embedding model in Keras with the generated triplet loss in model.compile.

The encyclopedia entry builds its triplet model with the loss as the model's output,
`Lambda(triplet_loss)([anchor, positive, negative])` and `loss=lambda y_true, y_pred: y_pred`. As written
the Lambda layer hands triplet_loss one list, so the call fails for want of `positive` and `negative`;
and a loss that is the model's output leaves nothing for prediction. Here the model outputs the three
embeddings side by side, and the generated Keras loss unpacks them (`TripletLoss.Y_PRED` is
("anchor", "positive", "negative"), equal parts along the last axis; y_true is not used), so the same
model embeds new points after training.

`losscomp.check` first confirms the entry's triplet_loss is the catalog's triplet loss. Then a shared
network embeds 16-dimensional points from 10 clusters into 4 dimensions; the script prints the share
of held-out triplets with d(a, p) + margin < d(a, n) before and after training, and the figure shows
the distances to positives and to negatives.

    python examples/triplet_model.py [--output DIR] [--fast]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import losscomp  # noqa: E402

MARGIN = 0.2
DIM, EMBED, CLUSTERS = 16, 4, 10
TRIPLET = losscomp.compile("triplet").build("tensorflow")


def triplet_loss(anchor, positive, negative, margin=0.2):
    """The encyclopedia entry's triplet loss, verbatim."""
    pos_dist = tf.reduce_sum(tf.square(anchor - positive), axis=-1)
    neg_dist = tf.reduce_sum(tf.square(anchor - negative), axis=-1)
    basic_loss = pos_dist - neg_dist + margin
    return tf.reduce_mean(tf.maximum(basic_loss, 0.0))


def triplets(n: int, centres: np.ndarray, rng: np.random.Generator):
    own = rng.integers(0, CLUSTERS, size=n)
    other = (own + rng.integers(1, CLUSTERS, size=n)) % CLUSTERS
    noise = lambda: 0.8 * rng.normal(size=(n, DIM))  # noqa: E731
    return [(centres[own] + noise()).astype("float32"), (centres[own] + noise()).astype("float32"),
            (centres[other] + noise()).astype("float32")]


def distances(embed: keras.Model, points):
    a, p, n = (embed.predict(x, verbose=0) for x in points)
    return ((a - p) ** 2).sum(-1), ((a - n) ** 2).sum(-1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="directory for the figure (default: a new temporary one)")
    parser.add_argument("--fast", action="store_true", help="fewer triplets and epochs")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="losscomp-triplet-"))
    output.mkdir(parents=True, exist_ok=True)
    n, epochs, points = (2_000, 8, 1_000) if args.fast else (10_000, 30, 20_000)

    report = losscomp.check(triplet_loss, "triplet", points=points)
    print(f"the entry's triplet_loss vs the catalog's triplet: {report.verdict}")
    try:
        keras.layers.Lambda(triplet_loss)([tf.zeros((2, 3))] * 3)
    except TypeError as error:
        reason = next((line for line in str(error).splitlines() if "missing" in line), str(error))
        reason = re.sub(r"\x1b\[[0-9;]*m", "", reason)   # Keras colours its messages
        print(f"the entry's Lambda(triplet_loss)([a, p, n]): TypeError: {reason}")

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CLUSTERS, DIM)) * 1.2
    train, test = triplets(n, centres, rng), triplets(4_000, centres, rng)
    keras.utils.set_random_seed(6)
    embed = keras.Sequential([keras.Input(shape=(DIM,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(EMBED)])
    inputs = [keras.Input(shape=(DIM,), name=name) for name in ("anchor", "positive", "negative")]
    model = keras.Model(inputs, keras.layers.Concatenate()([embed(x) for x in inputs]))
    model.compile(optimizer=keras.optimizers.Adam(0.005), loss=TRIPLET.TripletLoss(margin=MARGIN))

    before = distances(embed, test)
    history = model.fit(train, np.zeros(n, "float32"), epochs=epochs, batch_size=64, verbose=0)
    after = distances(embed, test)
    for label, (dp, dn) in (("before", before), ("after", after)):
        print(f"  {label:<6} training: held-out triplets with d(a, p) + {MARGIN} < d(a, n): "
              f"{np.mean(dp + MARGIN < dn):.3f}")
    print(f"  training loss {history.history['loss'][0]:.4f} -> {history.history['loss'][-1]:.4f}")
    packed = model.predict(test, verbose=0).astype("float64")
    a, p, q = np.split(packed, 3, axis=-1)
    entry = float(triplet_loss(a, p, q, MARGIN))
    ours = float(TRIPLET.TripletLoss(margin=MARGIN, dtype="float64")(np.zeros(len(a)), packed))
    print(f"  held-out loss: the generated TripletLoss {ours:.6f}, the entry's triplet_loss {entry:.6f}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (label, (dp, dn)) in zip(axes, (("before training", before), ("after training", after))):
        top = np.quantile(np.concatenate([dp, dn]), 0.99)
        bins = np.linspace(0, top, 50)
        ax.hist(dp, bins=bins, alpha=0.6, label="d(anchor, positive)")
        ax.hist(dn, bins=bins, alpha=0.6, label="d(anchor, negative)")
        ax.set_title(f"Squared distances, {label}")
        ax.set_xlabel("squared distance in the embedding")
        ax.legend()
    figure.tight_layout()
    path = output / "triplet_model.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure: {path}")
    return 0 if report.ok and abs(ours - entry) <= 1e-6 * max(1.0, entry) else 1


if __name__ == "__main__":
    sys.exit(main())
