"""Pictures of elementwise losses: the loss (and its gradient) against the prediction.

For a regression loss l(y, y_pred) the curve is l(0, e) against e = y_pred - 0, the prediction error;
for labels (binary, sign) one curve per label value, as the usual classification plots draw them.
The curves are computed by the emitted NumPy code, so a picture shows what the generated code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .compiler import CompiledLoss, compile as compile_loss
from .errors import LossOptionError

_LABELS = {"binary": (1.0, 0.0), "sign": (1.0, -1.0), "count": (0.0, 2.0)}
_RANGES = {"unit": (0.005, 0.995), "positive": (0.01, 3.0), "nonnegative": (0.0, 3.0)}


@dataclass(frozen=True)
class Curve:
    label: str
    x: np.ndarray
    value: np.ndarray
    gradient: np.ndarray


def curves(loss: CompiledLoss, span: tuple[float, float] = (-3.0, 3.0), points: int = 601) -> list[Curve]:
    """The curves of one elementwise loss with one target, other arguments held at typical values."""
    if not loss.derivation.elementwise or len(loss.targets) != 1:
        raise LossOptionError(f"'{loss.name}' is not an elementwise loss of one target; plot draws those only")
    summed = compile_loss(loss.definition.text or loss.name, name=loss.name, wrt=loss.targets,
                          reduction="sum", params={p.name: float(p.default) for p in loss.definition.parameters}) \
        if loss.reduction != "sum" else loss
    mod = summed.build("numpy")
    target = loss.targets[0]
    domain = loss.definition.argument(target).domain
    lo, hi = _RANGES.get(domain, span)
    x = np.linspace(lo, hi, points)
    others = [a for a in loss.definition.arguments if a.name != target]
    settings: list[dict[str, float]] = [{}]
    for other in others:
        values = _LABELS.get(other.domain, (0.0,) if other.domain in ("real", "nonnegative") else (0.5,))
        settings = [{**s, other.name: v} for s in settings for v in values]
    out = []
    for setting in settings:
        args = [x if a.name == target else np.full_like(x, setting[a.name]) for a in loss.definition.arguments]
        label = loss.name + ("" if not setting else " (" + ", ".join(f"{k}={v:g}" for k, v in setting.items()) + ")")
        with np.errstate(all="ignore"):
            out.append(Curve(label, x, np.asarray(mod.values(*args)), np.asarray(mod.grad(*args))))
    return out


def plot(sources: Sequence[str], output: str, *, gradient: bool = False, span=(-3.0, 3.0),
         params: dict[str, float] | None = None, title: str | None = None) -> str:
    """Draw the losses named in `sources` (catalog names, formulas or file texts) into `output` (PNG, SVG, PDF)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - depends on the environment
        raise LossOptionError("plot needs matplotlib: pip install 'losscomp[plot]'") from None
    losses = []
    for source in sources:
        loss = compile_loss(source)
        known = {p.name for p in loss.definition.parameters}
        mine = {k: v for k, v in (params or {}).items() if k in known}
        losses.append(compile_loss(source, params=mine) if mine else loss)
    rows = 2 if gradient else 1
    figure, axes = plt.subplots(rows, 1, figsize=(8, 4.5 * rows), squeeze=False)
    for loss in losses:
        for curve in curves(loss, span):
            axes[0][0].plot(curve.x, curve.value, label=curve.label)
            if gradient:
                axes[1][0].plot(curve.x, curve.gradient, label=curve.label)
    target_names = sorted({loss.targets[0] for loss in losses})
    axes[0][0].set_ylabel("loss per element")
    axes[0][0].set_title(title or "Loss functions")
    if gradient:
        axes[1][0].set_ylabel(f"d loss / d {'/'.join(target_names)}")
    axes[-1][0].set_xlabel(f"prediction ({', '.join(target_names)}), truth held fixed")
    for row in axes:
        row[0].grid(True, alpha=0.3)
        row[0].legend()
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output
