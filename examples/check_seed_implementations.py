"""Check every hand-written loss and gradient of the seed documents against the formula it means.

The seeds are the article "Loss Function" (an encyclopedia entry with NumPy, TensorFlow and PyTorch
code) and "How can Keras be used to combine custom and existing loss functions?". Their functions
are copied here verbatim (only the docstrings are new: each derives the verdict the mathematics
supports, before any code runs). The script checks each one with `losscomp.check` and prints

    seed function       framework   against          kind   expected             verdict              diagnosis

and exits 1 if a verdict is not the derived one.

    python examples/check_seed_implementations.py [--points N] [--verbose]

Conventions used in the derivations: N is the number of values the mean runs over (all elements
for an elementwise loss, the samples for a per-sample one), B the batch size, e = y - y_pred.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import losscomp  # noqa: E402

# -- the formulas ---------------------------------------------------------------------------------

# Probabilities p (not logits): the seed's cce_gradient clips y_pred into (0, 1).
CCE = "cce(y: onehot, p: simplex) = -sum(y * log(p))"
# The seed's focal loss is elementwise and reduce_mean-ed over every element (not summed per sample).
FOCAL = "focal(y: binary, p: unit; gamma = 2, alpha = 0.25) = -alpha * (1 - p)^gamma * y * log(p)"
# The seed flattens the whole batch before summing: the sums run over axis=all.
DICE = ("dice(y: binary, p: unit; smooth = 1) = "
        "1 - (2 * sum(y * p, axis=all) + smooth) / (sum(y, axis=all) + sum(p, axis=all) + smooth)")
TRIPLET = """triplet(anchor, positive, negative; margin = 0.2) =
    relu(sum((anchor - positive)^2) - sum((anchor - negative)^2) + margin)
  wrt anchor, positive, negative"""


# -- "Loss Function": NumPy -----------------------------------------------------------------------

def mean_squared_error(y_true, y_pred):
    """Mean Squared Error loss function

    mean((y - p)^2) is the catalog's mse with reduction mean, term for term: agrees.
    """
    return np.mean((y_true - y_pred) ** 2)


def mse_gradient(y_true, y_pred):
    """Gradient of Mean Squared Error

    L = (1/N) sum (y_i - p_i)^2, so dL/dp_i = -(2/N)(y_i - p_i) = 2 (p_i - y_i) / N, and
    y_true.size is N for any shape: exactly the gradient of the mean. Verdict: agrees.
    """
    return 2 * (y_pred - y_true) / y_true.size


def mse_gradient_prose(y, y_hat):
    """The article's formula for the gradient, "∇MSE = 2/n (y − ŷ)", written as code.

    dL/dŷ_i = 2 (ŷ_i - y_i)/n (above), so 2/n (y - ŷ) is its negative: it is dL/dy, the gradient
    with respect to the truth, which a model cannot change. Verdict: differs, sign_flip.
    """
    return 2 / y.size * (y - y_hat)


def mae_subgradient(y_true, y_pred):
    """The article's MAE subgradient.

    d/dp |y - p| = sign(p - y) away from 0, and numpy's sign(0) = 0 is abs'(0) = 0, losscomp's
    (PyTorch's) convention at the kink; divided by N for the mean. Verdict: agrees.
    """
    return np.sign(y_pred - y_true) / y_true.size


def binary_cross_entropy(y_true, y_pred, epsilon=1e-15):
    """Binary Cross-Entropy loss function

    -mean(y log p + (1 - y) log(1 - p)) is BCE, but p is first clipped to [1e-15, 1 - 1e-15]:
    inside the domain 0 < p < 1 the loss is then constant in p below 1e-15 (where y = 1) and above
    1 - 1e-15 (where y = 0), so its gradient is cut to 0 there. Verdict: differs, clipped_gradient.
    """
    y_pred = np.clip(y_pred, epsilon, 1 - epsilon)
    return -np.mean(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred))


def bce_gradient(y_true, y_pred, epsilon=1e-15):
    """Gradient of Binary Cross-Entropy

    d/dp -(y log p + (1 - y) log(1 - p)) = -y/p + (1 - y)/(1 - p) = (p - y) / (p (1 - p)), over N
    for the mean: the formula is right. But p is clipped first, so for p < 1e-15 (with y = 1) and
    p > 1 - 1e-15 (with y = 0), both inside the unit interval, the result is held at its value at
    the clip: -1/(1e-15 N) instead of -1/(p N). (With y = 1 at the top, or y = 0 at the bottom,
    the held value is within rounding of the true one.) Verdict: differs, clipped_gradient, in the
    region (y == 0 and p > 1 - 1e-15) or (y == 1 and p < 1e-15).
    """
    y_pred = np.clip(y_pred, epsilon, 1 - epsilon)
    return (y_pred - y_true) / (y_pred * (1 - y_pred) * y_true.size)


def cce_gradient(y_true, y_pred, epsilon=1e-15):
    """Gradient of Categorical Cross-Entropy

    For probabilities, L = -(1/B) sum_i sum_k y_ik log p_ik, so dL/dp_ik = -y_ik / (B p_ik). The
    seed returns (p - y)/(B p) = 1/B - y/(B p): the true gradient plus 1/B in every entry. (On the
    simplex a constant added to all entries does not change the derivative along the simplex, since
    directions there sum to 0; and (p - y)/B is the gradient with respect to the logits. The seed
    mixes the two.) As the gradient with respect to p it is off by a constant. The clip at 1e-15 acts
    only where y = 0, where it changes nothing. Verdict: differs, constant_offset (1/B).
    """
    y_pred = np.clip(y_pred, epsilon, 1 - epsilon)
    return (y_pred - y_true) / (y_true.shape[0] * y_pred)


# -- "Loss Function": TensorFlow and PyTorch ------------------------------------------------------

def huber_loss(y_true, y_pred, delta=1.0):
    """The article's TensorFlow Huber loss.

    0.5 e^2 where |e| <= delta, else delta (|e| - 0.5 delta), per element and unreduced (Keras takes
    the mean afterwards): the catalog's huber, values of reduction "none", branch for branch. Its
    autodiff gradient: -e in the quadratic part, -delta sign(e) beyond; both branches meet at
    |e| = delta, and tf.abs'(0) = 0 is never used (the quadratic branch holds 0). Verdict: agrees.
    """
    error = y_true - y_pred
    is_small_error = tf.abs(error) <= delta
    squared_loss = 0.5 * tf.square(error)
    linear_loss = delta * (tf.abs(error) - 0.5 * delta)
    return tf.where(is_small_error, squared_loss, linear_loss)


class HuberLoss(nn.Module):
    """The article's PyTorch Huber loss.

    forward takes (y_pred, y_true), the opposite of the formula's (y, y_pred); passed by position the
    two are exchanged. Huber depends on e only through e^2 and |e|, so huber(y - p) = huber(p - y)
    and the value does not care; its gradient with respect to the tensor holding the prediction is
    the same either way, since d/dp huber(p - y) = huber'(p - y) = -huber'(y - p) = d/dp huber(y - p).
    Per element, unreduced. Verdict: agrees.
    """

    def __init__(self, delta=1.0):
        super().__init__()
        self.delta = delta

    def forward(self, y_pred, y_true):
        error = y_true - y_pred
        is_small_error = torch.abs(error) <= self.delta
        squared_loss = 0.5 * torch.square(error)
        linear_loss = self.delta * (torch.abs(error) - 0.5 * self.delta)
        return torch.where(is_small_error, squared_loss, linear_loss)


def quantile_loss(y_true, y_pred, quantile=0.5):
    """The article's quantile loss, used with quantile = 0.9.

    mean(max(q e, (q - 1) e)) is the pinball loss with tau = q, value for value. At e = 0 the two
    arguments of max tie; tf.maximum gives the whole gradient to its first argument (d/dp of q e is
    -q), where losscomp, like torch.maximum, splits it: (-q + (1 - q)) / 2. That is a different
    subgradient at a kink, not a bug. Verdict: agrees except at kinks.
    """
    error = y_true - y_pred
    return tf.reduce_mean(tf.maximum(quantile * error, (quantile - 1) * error))


def quantile_loss_09(yt, yp):
    """The seed's `lambda yt, yp: quantile_loss(yt, yp, 0.9)`."""
    return quantile_loss(yt, yp, 0.9)


def focal_loss(gamma=2.0, alpha=0.25):
    """The article's focal loss (a factory; the loss is the inner function).

    Per element -alpha (1 - p)^gamma y log p, averaged over every element: the elementwise formula
    FOCAL with reduction mean (not a sum over classes: reduce_mean runs over the class axis too).
    But p is clipped to [1e-7, 1 - 1e-7]: where y = 1 and p < 1e-7 the loss is held at its value at
    1e-7 (0.25 (1 - 1e-7)^2 16.1 = 4.03 instead of 172.7 at p = 1e-300) and the autodiff gradient
    through clip_by_value is 0. At the top, p > 1 - 1e-7, the change is below 1e-20 and does not
    matter. Verdict: differs, clipped_gradient, where y == 1 and p < 1e-7.
    """
    def loss(y_true, y_pred):
        y_pred = tf.clip_by_value(y_pred, 1e-7, 1 - 1e-7)
        cross_entropy = -y_true * tf.math.log(y_pred)
        loss = alpha * tf.pow(1 - y_pred, gamma) * cross_entropy
        return tf.reduce_mean(loss)
    return loss


def triplet_loss(anchor, positive, negative, margin=0.2):
    """Triplet loss function

    Per sample max(|a - p|^2 - |a - n|^2 + margin, 0), the sums over the embedding axis (-1), then
    the mean over the batch: TRIPLET with reduction mean. Where the hinge is exactly 0, tf.maximum
    gives its gradient to the first argument (the active side) while losscomp takes relu'(0) = 0;
    random samples almost never land there. Verdict: agrees (agrees except at kinks if one does).
    """
    pos_dist = tf.reduce_sum(tf.square(anchor - positive), axis=-1)
    neg_dist = tf.reduce_sum(tf.square(anchor - negative), axis=-1)
    basic_loss = pos_dist - neg_dist + margin
    return tf.reduce_mean(tf.maximum(basic_loss, 0.0))


def dice_loss(y_true, y_pred, smooth=1.0):
    """Dice loss for image segmentation

    Both tensors are flattened, so every sum runs over the whole batch: DICE, whose sums are
    axis=all; a smooth function of p (the denominator is at least smooth = 1). Verdict: agrees.
    """
    y_true_f = tf.reshape(y_true, [-1])
    y_pred_f = tf.reshape(y_pred, [-1])
    intersection = tf.reduce_sum(y_true_f * y_pred_f)
    return 1 - (2. * intersection + smooth) / (tf.reduce_sum(y_true_f) + tf.reduce_sum(y_pred_f) + smooth)


# -- "How can Keras be used to combine custom and existing loss functions?" -----------------------

def underestimation_penalty(y_true, y_pred):
    """Custom loss function that penalizes underestimations more harshly.

    error = y - p < 0 means p > y, an overestimate, so -2 error = 2 (p - y) penalizes
    overestimates: it is 2 relu(p - y), the catalog's underestimation 2 relu(y - p) with its two
    arguments exchanged. Verdict: differs, swapped_arguments (the code does the opposite of its
    comment).
    """
    error = y_true - y_pred
    penalty = tf.where(error < 0, -2 * error, tf.zeros_like(error))
    return tf.reduce_mean(penalty)


# -- the table ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Seed:
    name: str
    fn: Callable
    against: str
    kind: str
    verdict: str
    codes: tuple[str, ...] = ()
    params: dict = field(default_factory=dict)
    also: tuple[str, ...] = ()          # verdicts that are just as right (a kink that may be hit)

    @property
    def against_name(self) -> str:
        return self.against if self.against.isidentifier() else self.against.split("(", 1)[0].strip()


SEEDS = [
    Seed("mean_squared_error", mean_squared_error, "mse", "loss", "agrees"),
    Seed("mse_gradient", mse_gradient, "mse", "grad", "agrees"),
    Seed("∇MSE = 2/n (y − ŷ)", mse_gradient_prose, "mse", "grad", "differs", ("sign_flip",)),
    Seed("mae_subgradient", mae_subgradient, "mae", "grad", "agrees"),
    Seed("binary_cross_entropy", binary_cross_entropy, "bce", "loss", "differs", ("clipped_gradient",)),
    Seed("bce_gradient", bce_gradient, "bce", "grad", "differs", ("clipped_gradient",)),
    Seed("cce_gradient", cce_gradient, CCE, "grad", "differs", ("constant_offset",)),
    Seed("huber_loss (TensorFlow)", huber_loss, "huber", "loss", "agrees"),
    Seed("HuberLoss (PyTorch)", HuberLoss(), "huber", "loss", "agrees"),
    Seed("quantile_loss(q=0.9)", quantile_loss_09, "pinball", "loss", "agrees_except_kinks", params={"tau": 0.9}),
    Seed("focal_loss()", focal_loss(), FOCAL, "loss", "differs", ("clipped_gradient",)),
    Seed("dice_loss", dice_loss, DICE, "loss", "agrees"),
    Seed("triplet_loss", triplet_loss, TRIPLET, "loss", "agrees", also=("agrees_except_kinks",)),
    Seed("underestimation_penalty", underestimation_penalty, "underestimation", "loss", "differs",
         ("swapped_arguments",)),
]


def run(seed: Seed, points: int) -> losscomp.verify.Report:
    return losscomp.check(seed.fn, against=seed.against, kind=seed.kind, params=seed.params or None,
                          points=points)


def as_expected(seed: Seed, report) -> bool:
    return report.verdict in (seed.verdict, *seed.also) and set(seed.codes) <= set(report.codes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--verbose", action="store_true", help="print every report in full")
    args = parser.parse_args(argv)
    header = f"{'seed function':<26} {'framework':<11} {'against':<16} {'kind':<5} {'expected':<20} " \
             f"{'verdict':<20} diagnosis"
    print(header)
    print("-" * len(header))
    failures = 0
    for seed in SEEDS:
        report = run(seed, args.points)
        ok = as_expected(seed, report)
        failures += not ok
        print(f"{seed.name:<26} {report.framework:<11} {seed.against_name:<16} {seed.kind:<5} {seed.verdict:<20} "
              f"{report.verdict:<20} {', '.join(report.codes) or '-'}{'' if ok else '   <-- not as derived'}")
        for d in report.diagnosis:
            print(f"{'':>28}{d.code}: {d.message}")
        if args.verbose:
            print(report, end="\n\n")
    print(f"\n{len(SEEDS) - failures} of {len(SEEDS)} verdicts as derived")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
