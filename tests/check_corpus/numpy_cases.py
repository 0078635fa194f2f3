"""NumPy cases for `losscomp.check` (see __init__)."""

from __future__ import annotations

import numpy as np

from check_corpus import Case

# -- wrong ----------------------------------------------------------------------------------------


def mse_grad_prose(y, y_hat):
    """2/n (y - y_hat): the gradient with respect to y, so the sign is flipped."""
    return 2 / y.size * (y - y_hat)


def mse_grad_half(y_true, y_pred):
    """Forgot the 2 of d(e^2)/de."""
    return (y_pred - y_true) / y_true.size


def mse_grad_per_batch(y_true, y_pred):
    """Divides by the batch size, not the element count: D times too large for (B, D) inputs."""
    return 2 * (y_pred - y_true) / y_true.shape[0]


def log_cosh_no_log2(y, y_pred):
    """e + softplus(-2e), the stable log-cosh, without the - log 2."""
    e = y_pred - y
    return e + np.logaddexp(0.0, -2 * e)


def bce_arguments_swapped(y_pred, y_true):
    """Takes (y_pred, y_true), so a call in the formula's order (y, p) mixes them up."""
    return -(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred))


def mse_per_feature(y_true, y_pred):
    """Averages over the batch axis only: one value per feature."""
    return np.mean((y_true - y_pred) ** 2, axis=0)


def log_cosh_naive(y, y_pred):
    """log(cosh(e)): cosh overflows for |e| > 710 although log-cosh is about |e| - log 2 there."""
    return np.log(np.cosh(y_pred - y))


def bce_gradient_clipped(y_true, y_pred, epsilon=1e-15):
    """The seed document's bce_gradient: clips p to [1e-15, 1 - 1e-15]."""
    y_pred = np.clip(y_pred, epsilon, 1 - epsilon)
    return (y_pred - y_true) / (y_pred * (1 - y_pred) * y_true.size)


def huber_linear_branch_unshifted(y, y_pred, delta=1.0):
    """The linear branch lacks the - delta^2 / 2 that makes Huber continuous."""
    e = y - y_pred
    return np.where(np.abs(e) <= delta, 0.5 * e ** 2, delta * np.abs(e))


WRONG = [
    Case(mse_grad_prose, "mse", "grad", "sign_flip"),
    Case(mse_grad_half, "mse", "grad", "scale_factor"),
    Case(mse_grad_per_batch, "mse", "grad", "scale_factor"),
    Case(log_cosh_no_log2, "log_cosh", "loss", "constant_offset"),
    Case(bce_arguments_swapped, "bce", "loss", "swapped_arguments"),
    Case(mse_per_feature, "mse", "loss", "wrong_axis"),
    Case(log_cosh_naive, "log_cosh", "loss", "unstable"),
    Case(bce_gradient_clipped, "bce", "grad", "clipped_gradient"),
    Case(huber_linear_branch_unshifted, "huber", "loss", "wrong_region"),
]

# -- right ----------------------------------------------------------------------------------------


def huber_strict(y, y_pred, delta=1.0):
    """Huber with < where the catalog has <=: both branches meet at |e| = delta."""
    e = y - y_pred
    return np.where(np.abs(e) < delta, 0.5 * e ** 2, delta * (np.abs(e) - 0.5 * delta))


def huber_hessian_strict(y, y_pred, delta=1.0):
    """The Huber Hessian with <: 0 instead of 1 exactly at |e| = delta, a kink."""
    return np.where(np.abs(y - y_pred) < delta, 1.0, 0.0) / y.size


def mse_dot(y_true, y_pred):
    """The mean squared error as a dot product."""
    e = (y_true - y_pred).ravel()
    return np.dot(e, e) / e.size


def hinge_grad(y, y_pred):
    """d/dp relu(1 - y p) = -y where 1 - y p > 0, else 0 (0 at the kink, as relu'(0) = 0)."""
    return np.where(y * y_pred < 1, -y, 0.0) / y.size


def poisson_grad(y, log_rate):
    """d/dr (exp(r) - y r) = exp(r) - y, of the mean."""
    return (np.exp(log_rate) - y) / y.size


def squared_hinge_maximum(y, y_pred):
    """max(0, 1 - y p)^2 per element."""
    return np.maximum(0.0, 1 - y * y_pred) ** 2


RIGHT = [
    Case(huber_strict, "huber", "loss", "agrees"),
    Case(huber_hessian_strict, "huber", "hessian", "agrees_except_kinks"),
    Case(mse_dot, "mse", "loss", "agrees"),
    Case(hinge_grad, "hinge", "grad", "agrees"),
    Case(poisson_grad, "poisson_nll", "grad", "agrees"),
    Case(squared_hinge_maximum, "squared_hinge", "loss", "agrees"),
]
