"""PyTorch cases for `losscomp.check` (see __init__)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from check_corpus import Case

# -- wrong ----------------------------------------------------------------------------------------


def mae_grad_flipped(y, y_pred):
    """sign(y - y_pred)/n: the subgradient with respect to y."""
    return torch.sign(y - y_pred) / y.numel()


def mse_sum(y, y_pred):
    """The sum of squares where the mean is meant."""
    return torch.sum((y - y_pred) ** 2)


def gaussian_nll_with_constant(y, mu, var):
    """Keeps the 0.5 log(2 pi) that the catalog's Gaussian NLL leaves out."""
    return 0.5 * torch.log(2 * math.pi * var) + (y - mu) ** 2 / (2 * var)


def pinball_residual_reversed(y, y_pred, tau=0.9):
    """e = y_pred - y: the quantile loss of the arguments exchanged."""
    e = y_pred - y
    return torch.maximum(tau * e, (tau - 1) * e).mean()


def mse_grad_batch_mean(y, y_pred):
    """Averages the gradient over the batch: one number per feature (like a bias gradient)."""
    return 2 * (y_pred - y).mean(dim=0)


def bce_logits_naive(y, z):
    """log(sigmoid(z)): log(0) = -inf for z below -745 although the loss is about -z there."""
    s = torch.sigmoid(z)
    return -(y * torch.log(s) + (1 - y) * torch.log(1 - s))


def bce_clamped(y, p):
    """Clamps p to [1e-7, 1 - 1e-7]: the loss is flat, and its gradient 0, beyond."""
    p = torch.clamp(p, 1e-7, 1 - 1e-7)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def mae_grad_one_sided(y, y_pred):
    """Forgot the -1 below: 1 where y_pred > y, 0 elsewhere."""
    return torch.where(y_pred > y, 1.0, 0.0).to(y.dtype) / y.numel()


WRONG = [
    Case(mae_grad_flipped, "mae", "grad", "sign_flip"),
    Case(mse_sum, "mse", "loss", "scale_factor"),
    Case(gaussian_nll_with_constant, "gaussian_nll", "loss", "constant_offset"),
    Case(pinball_residual_reversed, "pinball", "loss", "swapped_arguments", {"tau": 0.9}),
    Case(mse_grad_batch_mean, "mse", "grad", "wrong_axis"),
    Case(bce_logits_naive, "bce_logits", "loss", "unstable"),
    Case(bce_clamped, "bce", "loss", "clipped_gradient"),
    Case(mae_grad_one_sided, "mae", "grad", "wrong_region"),
]

# -- right ----------------------------------------------------------------------------------------


def bce_logaddexp(y, p):
    """BCE through logits: z = log p - log(1 - p), then log(1 + e^-z) and log(1 + e^z) by logaddexp."""
    z = torch.log(p) - torch.log1p(-p)
    zero = torch.zeros_like(z)
    return y * torch.logaddexp(zero, -z) + (1 - y) * torch.logaddexp(zero, z)


def pinball_relu(y, y_pred, tau=0.9):
    """tau relu(e) + (1 - tau) relu(-e): at e = 0 autograd takes 0 where losscomp splits the tie."""
    e = y - y_pred
    return (tau * torch.relu(e) + (1 - tau) * torch.relu(-e)).mean()


def huber_functional(y, y_pred):
    """torch.nn.functional.huber_loss, mean over all elements."""
    return F.huber_loss(y_pred, y, reduction="mean", delta=1.0)


def mse_hessian(y, y_pred):
    """d2/dp2 of the mean of (y - p)^2: 2/N everywhere."""
    return torch.full_like(y_pred, 2.0 / y_pred.numel())


RIGHT = [
    Case(bce_logaddexp, "bce", "loss", "agrees"),
    Case(pinball_relu, "pinball", "loss", "agrees_except_kinks", {"tau": 0.9}),
    Case(huber_functional, "huber", "loss", "agrees"),
    Case(mse_hessian, "mse", "hessian", "agrees"),
]
