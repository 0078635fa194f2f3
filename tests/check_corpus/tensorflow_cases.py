"""TensorFlow cases for `losscomp.check` (see __init__)."""

from __future__ import annotations

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from check_corpus import Case  # noqa: E402

# -- wrong ----------------------------------------------------------------------------------------


def hinge_grad_flipped(y, y_pred):
    """+y where the margin is violated: the sign of d/dp relu(1 - y p) is -y."""
    n = tf.cast(tf.size(y), y.dtype)
    return tf.where(y * y_pred < 1, y, tf.zeros_like(y)) / n


def mae_grad_of_sum(y, y_pred):
    """sign(p - y) without the 1/N of the mean."""
    return tf.sign(y_pred - y)


def log_cosh_keras_style(y, y_pred):
    """softplus(-2e) + e, without the - log 2 (a constant)."""
    e = y_pred - y
    return tf.math.softplus(-2.0 * e) + e


def poisson_swapped(rate_log, count):
    """Takes the prediction first under names no framework uses; called as (y, log_rate) it computes
    exp(y) - log_rate y."""
    return tf.exp(rate_log) - count * rate_log


def poisson_input_target(input, target):
    """PyTorch's (input, target) names, in a TensorFlow function: mapped by the names."""
    return tf.exp(input) - target * input


def underestimation_penalty(y_true, y_pred):
    """The seed document's penalty: error < 0 is an overestimate, so it penalizes the other side."""
    error = y_true - y_pred
    penalty = tf.where(error < 0, -2 * error, tf.zeros_like(error))
    return tf.reduce_mean(penalty)


def mae_per_feature(y, y_pred):
    """reduce_mean over axis 0 (the batch) only."""
    return tf.reduce_mean(tf.abs(y - y_pred), axis=0)


def bce_logits_grad_exp(y, z):
    """sigmoid(z) as exp(z) / (1 + exp(z)): inf / inf = nan for z > 709."""
    n = tf.cast(tf.size(y), y.dtype)
    return (tf.exp(z) / (1 + tf.exp(z)) - y) / n


def mse_grad_clipped(y, y_pred):
    """Gradient clipping inside the loss: 2 e held at +-1 (it is the Huber gradient, not MSE's)."""
    n = tf.cast(tf.size(y), y.dtype)
    return tf.clip_by_value(2 * (y_pred - y), -1.0, 1.0) / n


def focal_loss(gamma=2.0, alpha=0.25):
    """The seed document's focal loss: p clipped to [1e-7, 1 - 1e-7]."""
    def loss(y_true, y_pred):
        y_pred = tf.clip_by_value(y_pred, 1e-7, 1 - 1e-7)
        cross_entropy = -y_true * tf.math.log(y_pred)
        return tf.reduce_mean(alpha * tf.pow(1 - y_pred, gamma) * cross_entropy)
    return loss


def pinball_lower_side_doubled(y, y_pred, tau=0.9):
    """The e < 0 side weighted 2 (tau - 1) instead of (tau - 1)."""
    e = y - y_pred
    return tf.where(e >= 0, tau * e, 2 * (tau - 1) * e)


def dice_per_sample(y_true, y_pred, smooth=1.0):
    """Dice per sample, where the batch-wide Dice sums over everything (axis=all)."""
    intersection = tf.reduce_sum(y_true * y_pred, axis=-1)
    return 1 - (2.0 * intersection + smooth) / (tf.reduce_sum(y_true, axis=-1) + tf.reduce_sum(y_pred, axis=-1)
                                                + smooth)


FOCAL = "focal(y: binary, p: unit; gamma = 2, alpha = 0.25) = -alpha * (1 - p)^gamma * y * log(p)"

WRONG = [
    Case(hinge_grad_flipped, "hinge", "grad", "sign_flip"),
    Case(mae_grad_of_sum, "mae", "grad", "scale_factor"),
    Case(log_cosh_keras_style, "log_cosh", "loss", "constant_offset"),
    Case(poisson_swapped, "poisson_nll", "loss", "swapped_arguments"),
    Case(underestimation_penalty, "underestimation", "loss", "swapped_arguments"),
    Case(mae_per_feature, "mae", "loss", "wrong_axis"),
    Case(dice_per_sample, "dice", "loss", "wrong_axis"),
    Case(bce_logits_grad_exp, "bce_logits", "grad", "unstable"),
    Case(mse_grad_clipped, "mse", "grad", "clipped_gradient"),
    Case(focal_loss(), FOCAL, "loss", "clipped_gradient"),
    Case(pinball_lower_side_doubled, "pinball", "loss", "wrong_region", {"tau": 0.9}),
]

# -- right ----------------------------------------------------------------------------------------


def mae_grad_sign(y, y_pred):
    """sign(p - y)/N, sign(0) = 0 as abs'(0) = 0."""
    return tf.sign(y_pred - y) / tf.cast(tf.size(y), y.dtype)


def log_cosh_softplus(y, y_pred):
    """The stable log-cosh: e + softplus(-2e) - log 2 per element."""
    e = y_pred - y
    return e + tf.math.softplus(-2.0 * e) - math.log(2.0)


def bce_logits_tf(y, z):
    """tf.nn.sigmoid_cross_entropy_with_logits, mean over everything."""
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=z))


RIGHT = [
    Case(mae_grad_sign, "mae", "grad", "agrees"),
    Case(log_cosh_softplus, "log_cosh", "loss", "agrees"),
    Case(bce_logits_tf, "bce_logits", "loss", "agrees"),
    Case(poisson_input_target, "poisson_nll", "loss", "agrees"),
]
