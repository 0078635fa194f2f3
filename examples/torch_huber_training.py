"""PyTorch: the encyclopedia entry's HuberLoss module replaced by the generated one in a training loop.

The entry's `HuberLoss(nn.Module)` takes forward(y_pred, y_true) and returns the loss of every element,
unreduced; its own example prints it with `f"{HuberLoss()(y_pred, y_true):.4f}"`, which raises for a
tensor of four values, and `loss.backward()` on it raises too ("grad can be implicitly created only for
scalar outputs"). `losscomp.check` (which passes a torch module its arguments in PyTorch's order)
confirms its values are the catalog's huber.

The generated `HuberLoss` is a torch.nn loss: forward(input, target), reduction="mean" by default,
delta a constructor argument, and a backward that is the symbolic gradient. A linear regression with
10% gross outliers is trained from one initialisation with torch.nn.HuberLoss, with the generated
module and, for contrast, with torch.nn.MSELoss. The first two give the same loss at every step; the
figure shows the curves and the fitted lines.

    python examples/torch_huber_training.py [--output DIR] [--fast]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import losscomp

HUBER = losscomp.compile("huber").build("torch")


class HuberLoss(nn.Module):
    """The encyclopedia entry's PyTorch Huber loss, verbatim."""

    def __init__(self, delta=1.0):
        super().__init__()
        self.delta = delta

    def forward(self, y_pred, y_true):
        error = y_true - y_pred
        is_small_error = torch.abs(error) <= self.delta
        squared_loss = 0.5 * torch.square(error)
        linear_loss = self.delta * (torch.abs(error) - 0.5 * self.delta)
        return torch.where(is_small_error, squared_loss, linear_loss)


def data(n: int, rng: np.random.Generator):
    x = rng.uniform(-3, 3, size=(n, 1))
    y = 1.5 * x[:, 0] - 0.5 + 0.3 * rng.normal(size=n)
    bad = rng.choice(n, n // 10, replace=False)
    y[bad] += rng.uniform(8, 15, size=bad.size)
    return torch.tensor(x), torch.tensor(y)[:, None]


def train(criterion, x, y, steps: int):
    torch.manual_seed(0)
    model = nn.Linear(1, 1).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = criterion(model(x), y)   # (input, target), as every torch.nn loss
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return model, np.array(history)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="directory for the figure (default: a new temporary one)")
    parser.add_argument("--fast", action="store_true", help="fewer steps and sample points")
    args = parser.parse_args(argv)
    output = args.output or Path(tempfile.mkdtemp(prefix="losscomp-torch-huber-"))
    output.mkdir(parents=True, exist_ok=True)
    steps, points = (150, 1_000) if args.fast else (600, 20_000)

    report = losscomp.check(HuberLoss(), "huber", points=points)
    print(f"the entry's HuberLoss vs the catalog's huber: {report.verdict}; called as {report.call}")
    y_true = torch.tensor([3.0, -0.5, 2.0, 7.0])
    y_pred = torch.tensor([2.5, 0.0, 2.0, 8.0])
    try:
        print(f"Huber: {HuberLoss()(y_pred, y_true):.4f}")
    except (TypeError, RuntimeError) as error:
        print(f"the entry's print(f\"Huber: {{HuberLoss()(y_pred, y_true):.4f}}\"): {type(error).__name__}: {error}")
    print(f"the generated module: Huber: {HUBER.HuberLoss()(y_pred, y_true):.4f} "
          f"(torch.nn.HuberLoss: {nn.HuberLoss()(y_pred, y_true):.4f})")

    rng = np.random.default_rng(0)
    x, y = data(400, rng)
    fits = {"torch.nn.HuberLoss": train(nn.HuberLoss(delta=1.0), x, y, steps),
            "generated HuberLoss": train(HUBER.HuberLoss(delta=1.0), x, y, steps),
            "torch.nn.MSELoss": train(nn.MSELoss(), x, y, steps)}
    same = np.allclose(fits["torch.nn.HuberLoss"][1], fits["generated HuberLoss"][1], rtol=1e-12, atol=0)
    print(f"\n{steps} SGD steps on 400 points with 10% outliers (true slope 1.5, intercept -0.5):")
    for label, (model, history) in fits.items():
        slope, intercept = model.weight.item(), model.bias.item()
        print(f"  {label:<22} final loss {history[-1]:.6f}   slope {slope:.3f}   intercept {intercept:+.3f}")
    print(f"  torch.nn.HuberLoss and the generated module give the same loss at every step: {same}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (label, (_, history)), style in zip(fits.items(), ("C0-", "C3--", "C7-")):
        left.plot(history, style, label=label)
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_ylabel("training loss")
    left.legend()
    right.scatter(x[:, 0], y[:, 0], s=4, color="0.6")
    grid = torch.linspace(-3, 3, 50, dtype=torch.float64)[:, None]
    for (label, (model, _)), color in zip(fits.items(), ("C0", "C3", "C7")):
        with torch.no_grad():
            right.plot(grid[:, 0], model(grid)[:, 0], color=color, label=label)
    right.set_xlabel("x")
    right.set_ylabel("y")
    right.legend()
    figure.tight_layout()
    path = output / "torch_huber_training.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"\nfigure: {path}")
    return 0 if report.ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
