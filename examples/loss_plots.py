"""The encyclopedia entry's loss plots, with gradients, drawn by `losscomp.plot` from the generated code.

The entry draws MSE, MAE and Huber against the prediction error, and binary cross-entropy and the
hinge loss against a "predicted probability" from 0.01 to 0.99. The hinge loss is a loss of a score
(a margin, any real number, labels -1 and 1), not of a probability, so on the entry's axis it shows
only a sliver of its shape; here it gets its own figure over scores. Each curve (and its derivative,
the panel below it) is computed by the emitted NumPy module, so a picture shows what the generated
code does, kinks included (abs'(0) = 0, relu'(0) = 0). The script also checks that the entry's NumPy
plotting functions are the catalog's losses (values of one element).

    python examples/loss_plots.py [--output DIR] [--fast]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import losscomp
from losscomp.plot import curves, plot


# the entry's plotting functions, verbatim
def mse(x):
    return x ** 2


def mae(x):
    return np.abs(x)


def huber(x, delta=1.0):
    return np.where(np.abs(x) <= delta, 0.5 * x ** 2, delta * (np.abs(x) - 0.5 * delta))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="directory for the figures (default: a new temporary one)")
    parser.add_argument("--fast", action="store_true", help="(the plots are fast anyway)")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="losscomp-plots-"))
    output.mkdir(parents=True, exist_ok=True)

    worst = 0.0
    for name, fn in (("mse", mse), ("mae", mae), ("huber", huber)):
        curve = curves(losscomp.compile(name))[0]    # l(0, e) against e = y_pred
        worst = max(worst, float(np.max(np.abs(fn(curve.x) - curve.value))))
    print(f"the entry's mse, mae and huber equal the catalog's on [-3, 3]: largest difference {worst:.1e}")

    paths = [plot(["mse", "mae", "huber"], str(output / "regression_losses.png"), gradient=True,
                  title="Regression losses against the prediction (truth 0)"),
             plot(["bce", "binary_focal"], str(output / "probability_losses.png"), gradient=True,
                  title="Losses of a probability p, for y = 1 and y = 0"),
             plot(["hinge", "squared_hinge"], str(output / "margin_losses.png"), gradient=True,
                  title="Losses of a score, for labels 1 and -1")]
    for path in paths:
        print(f"figure: {path}")
    return 0 if worst == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
