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


def bce_arguments_swapped(probability, outcome):
    """Takes the prediction first under names that say nothing of it, so a call in the formula's order
    (y, p) mixes them up."""
    return -(outcome * np.log(probability) + (1 - outcome) * np.log(1 - probability))


def bce_prediction_first(y_pred, y_true):
    """Takes (y_pred, y_true): Keras' names say which is which, whatever their order."""
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


def cce_summed_over_batch(y_true, y_pred):
    """Sums over axis 0, the batch, where the cross-entropy sums over the classes."""
    return -np.sum(y_true * np.log(y_pred), axis=0)


CCE = "cce(y: onehot, p: simplex) = -sum(y * log(p))"
SCE = "sce(y: onehot, z) = logsumexp(z) - sum(y * z)"
TRIPLET = """triplet(anchor, positive, negative; margin = 0.2) =
    relu(sum((anchor - positive)^2) - sum((anchor - negative)^2) + margin)
  wrt anchor, positive, negative"""

WRONG = [
    Case(mse_grad_prose, "mse", "grad", "sign_flip"),
    Case(cce_summed_over_batch, CCE, "loss", "wrong_axis"),
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


def cce_per_sample(y_true, y_pred):
    """keras.losses.categorical_crossentropy's convention: one value per sample."""
    return -np.sum(y_true * np.log(y_pred), axis=-1)


def softmax_ce_hessian(y, z):
    """Blocks (diag(p) - p p^T) / B of the mean softmax cross-entropy, p = softmax(z)."""
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return (np.einsum("bi,ij->bij", p, np.eye(p.shape[1])) - p[:, :, None] * p[:, None, :]) / z.shape[0]


def triplet_grad(anchor, positive, negative, margin=0.2):
    """One gradient per target, of the mean over the batch; 0 where the hinge is inactive."""
    active = (np.sum((anchor - positive) ** 2, -1) - np.sum((anchor - negative) ** 2, -1) + margin > 0)[:, None]
    scale = 2 * active / anchor.shape[0]
    return scale * (negative - positive), -scale * (anchor - positive), scale * (anchor - negative)


RIGHT = [
    Case(huber_strict, "huber", "loss", "agrees"),
    Case(cce_per_sample, CCE, "loss", "agrees"),
    Case(softmax_ce_hessian, SCE, "hessian", "agrees"),
    Case(triplet_grad, TRIPLET, "grad", "agrees"),
    Case(huber_hessian_strict, "huber", "hessian", "agrees_except_kinks"),
    Case(mse_dot, "mse", "loss", "agrees"),
    Case(hinge_grad, "hinge", "grad", "agrees"),
    Case(poisson_grad, "poisson_nll", "grad", "agrees"),
    Case(squared_hinge_maximum, "squared_hinge", "loss", "agrees"),
    Case(bce_prediction_first, "bce", "loss", "agrees"),
]
