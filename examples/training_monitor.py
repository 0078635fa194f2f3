"""A training monitor that logs the terms of a combined loss separately: a Keras callback and a torch hook.

The encyclopedia entry's `LossMonitor` callback computes a validation loss at the end of each epoch with
`loss_func(self.y_val, self.model.predict(self.X_val))`. With a NumPy loss, y_val of shape (n,) and the
(n, 1) predictions of a Dense(1) model broadcast to (n, n): the number it prints is the mean over all
pairs, not the validation loss (shown below). The monitor here

  - Keras: `TermMonitor`, a callback that puts each term of the loss, and the total, on the validation
    data into the epoch's logs (val_mse, val_underestimation, ...), as a History records them;
  - PyTorch: a forward hook on the generated nn.Module that records each term on every training
    batch, without touching the gradient;

for the combined loss 0.7 mse + 0.3 underestimation, built by adding compiled losses; its terms come
from `losscomp.combine.terms_of`. The figure shows the terms and their weighted sum for both frameworks.

    python examples/training_monitor.py [--output DIR] [--fast]
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
import torch  # noqa: E402

import losscomp  # noqa: E402
from losscomp.combine import terms_of  # noqa: E402

COMBINED = 0.7 * losscomp.compile("mse") + 0.3 * losscomp.compile("underestimation")


def mean_squared_error(y_true, y_pred):
    """The entry's MSE, as its LossMonitor is given it."""
    return np.mean((y_true - y_pred) ** 2)


class TermMonitor(keras.callbacks.Callback):
    """At the end of each epoch, every term of `loss` (and their weighted sum) on the validation data,
    into the logs as val_<term> (so History and other callbacks see them)."""

    def __init__(self, x_val, y_val, loss):
        super().__init__()
        self.x_val, self.y_val = x_val, y_val
        self.terms = [(float(c), term.name, term.build("numpy")) for c, term in terms_of(loss)]
        self.total = loss.build("numpy")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        y_pred = self.model.predict(self.x_val, verbose=0).reshape(np.shape(self.y_val))  # one shape, no broadcast
        for _, name, module in self.terms:
            logs[f"val_{name}"] = float(module.loss(self.y_val, y_pred))
        logs["val_total"] = float(self.total.loss(self.y_val, y_pred))


def term_hook(loss, log: dict):
    """A forward hook for the generated nn.Module of `loss`: each term on the batch, into `log`."""
    terms = [(name, term.build("torch")) for name, term in ((t.name, t) for _, t in terms_of(loss))]

    def hook(module, inputs, output):
        prediction, target = inputs               # forward(input, target): PyTorch's order
        with torch.no_grad():
            for name, term in terms:
                log.setdefault(name, []).append(float(term.loss(target, prediction)))  # the plain functions: (y, y_pred)
            log.setdefault("total", []).append(float(output))
    return hook


def data(n: int, rng: np.random.Generator):
    x = rng.normal(size=(n, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5], "float32") + 0.5 * rng.normal(size=n)).astype("float32")
    return x, y


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="directory for the figure (default: a new temporary one)")
    parser.add_argument("--fast", action="store_true", help="fewer epochs")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="losscomp-monitor-"))
    output.mkdir(parents=True, exist_ok=True)
    epochs, steps = (8, 60) if args.fast else (40, 400)
    rng = np.random.default_rng(0)
    x, y = data(512, rng)
    x_val, y_val = data(256, rng)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.02), loss=COMBINED.build("tensorflow").MsePlusUnderestimationLoss())
    monitor = TermMonitor(x_val, y_val, COMBINED)
    history = model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, callbacks=[monitor]).history
    prediction = model.predict(x_val, verbose=0)
    print("Keras, validation terms per epoch (from History):")
    print(f"  {'epoch':>5} {'val_mse':>9} {'val_underestimation':>20} {'val_total':>10}")
    for epoch in range(0, epochs, max(1, epochs // 5)):
        print(f"  {epoch:>5} {history['val_mse'][epoch]:>9.4f} {history['val_underestimation'][epoch]:>20.4f} "
              f"{history['val_total'][epoch]:>10.4f}")
    print(f"  the entry's LossMonitor would print {mean_squared_error(y_val, prediction):.4f} as the validation "
          f"MSE (y_val (n,) against predictions (n, 1): the mean over all n^2 pairs); it is "
          f"{history['val_mse'][-1]:.4f}")

    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 1)
    criterion = COMBINED.build("torch").MsePlusUnderestimationLoss()
    log: dict = {}
    criterion.register_forward_hook(term_hook(COMBINED, log))
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.02)
    xt, yt = torch.tensor(x), torch.tensor(y)[:, None]
    for step in range(steps):
        batch = torch.randint(0, len(xt), (64,))
        optimizer.zero_grad()
        criterion(linear(xt[batch]), yt[batch]).backward()
        optimizer.step()
    weighted = 0.7 * np.array(log["mse"]) + 0.3 * np.array(log["underestimation"])
    print(f"\nPyTorch, {steps} steps: the hook logged mse {log['mse'][0]:.4f} -> {log['mse'][-1]:.4f}, "
          f"underestimation {log['underestimation'][0]:.4f} -> {log['underestimation'][-1]:.4f}; "
          f"0.7 mse + 0.3 underestimation equals the loss at every step: "
          f"{np.allclose(weighted, log['total'], rtol=1e-5)}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    for key in ("val_mse", "val_underestimation", "val_total"):
        left.plot(history[key], label=key)
    left.set_title("Keras: TermMonitor, validation terms per epoch")
    left.set_xlabel("epoch")
    for key in ("mse", "underestimation", "total"):
        right.plot(log[key], label=key, lw=1)
    right.set_title("PyTorch: forward hook, training terms per step")
    right.set_xlabel("step")
    for ax in (left, right):
        ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
    figure.tight_layout()
    path = output / "training_monitor.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure: {path}")
    return 0 if np.allclose(weighted, log["total"], rtol=1e-5) else 1


if __name__ == "__main__":
    sys.exit(main())
