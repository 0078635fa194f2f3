"""losscomp demo: the pinball and Huber losses, compiled for NumPy, PyTorch and TensorFlow.

For each loss it prints the per-element loss, gradient and Hessian, runs the emitted code on random
data and compares the symbolic gradient and Hessian with each framework's own autodiff (and NumPy's
with central differences). Exits non-zero if anything disagrees.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TensorFlow's start-up chatter out of the demo

import numpy as np  # noqa: E402

import losscomp  # noqa: E402

N = 100_000
RTOL = 1e-6
PINBALL_SOURCE = """
pinball(y, y_pred; tau = 0.5) = max(tau * e, (tau - 1) * e)
  where e = y - y_pred
"""


def relative_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def show(loss: losscomp.CompiledLoss) -> None:
    text = loss.plain()
    target = loss.targets[0]
    print(f"  loss      l = {text['loss']}")
    print(f"  gradient  dl/d{target} = {text['gradient'][0]}")
    print(f"  Hessian   d2l/d{target}^2 = {text['hessian'][0][0]}")


def data(seed: int):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=N)
    y_pred = y + rng.normal(scale=2.0, size=N)
    return y, y_pred


def check_numpy(loss, params, y, y_pred) -> list[tuple[str, float]]:
    mod = loss.build("numpy")
    g = mod.grad(y, y_pred, **params)
    h = mod.hessian(y, y_pred, **params)
    # central differences of the emitted per-element loss (the mean's derivative is l'/N)
    step = 1e-6 * np.maximum(1.0, np.abs(y_pred))
    fd_g = (mod.values(y, y_pred + step, **params) - mod.values(y, y_pred - step, **params)) / (2 * step) / N
    fd_h = (mod.grad(y, y_pred + step, **params) - mod.grad(y, y_pred - step, **params)) / (2 * step)
    # off the kinks: drop the few points whose difference stencil straddles a branch boundary
    h_left, h_right = mod.hessian(y, y_pred - step, **params), mod.hessian(y, y_pred + step, **params)
    smooth = np.isclose(h_left, h_right, rtol=1e-3, atol=0)
    print(f"  (numpy differences use the {smooth.sum():,} points whose stencil stays off the kinks)")
    return [("grad vs central differences", relative_error(g[smooth], fd_g[smooth])),
            ("hessian vs differences of grad", relative_error(h[smooth], fd_h[smooth]))]


def check_torch(loss, params, y, y_pred, reference=None) -> list[tuple[str, float]]:
    import torch

    mod = loss.build("torch")
    y_t = torch.tensor(y)
    p = torch.tensor(y_pred, requires_grad=True)
    (auto_g,) = torch.autograd.grad(mod.loss(y_t, p, **params), p, create_graph=True)
    # The Hessian is diagonal, so it equals the gradient of sum(grad); a piecewise-linear loss has none.
    auto_h = (torch.autograd.grad(auto_g.sum(), p)[0] if auto_g.requires_grad else torch.zeros_like(p))
    g = mod.grad(y_t, p.detach(), **params)
    rows = [("grad vs torch.autograd", relative_error(g, auto_g.detach())),
            ("hessian vs torch.autograd", relative_error(mod.hessian(y_t, p.detach(), **params), auto_h))]
    if reference is not None:
        q = torch.tensor(y_pred, requires_grad=True)
        (ref_g,) = torch.autograd.grad(reference(y_t, q), q)
        rows.append(("grad vs autograd of torch.maximum(tau*e, (tau-1)*e).mean()", relative_error(g, ref_g)))
    return rows


def check_tensorflow(loss, params, y, y_pred) -> list[tuple[str, float]]:
    import tensorflow as tf

    mod = loss.build("tensorflow")
    y_t, p = tf.constant(y), tf.constant(y_pred)
    with tf.GradientTape() as outer:
        outer.watch(p)
        with tf.GradientTape() as inner:
            inner.watch(p)
            value = mod.loss(y_t, p, **params)
        auto_g = inner.gradient(value, p)
        total = tf.reduce_sum(auto_g)
    auto_h = outer.gradient(total, p, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [("grad vs tf.GradientTape", relative_error(mod.grad(y_t, p, **params), auto_g)),
            ("hessian vs tf.GradientTape", relative_error(mod.hessian(y_t, p, **params), auto_h))]


def main() -> int:
    import torch

    tau = 0.9
    cases = [
        ("pinball", losscomp.compile(PINBALL_SOURCE, params={"tau": tau}), {"tau": tau},
         lambda y, q: torch.maximum(tau * (y - q), (tau - 1) * (y - q)).mean()),
        ("huber", losscomp.compile("huber", params={"delta": 1.0}), {"delta": 1.0}, None),
    ]
    failures = 0
    for seed, (title, loss, params, reference) in enumerate(cases):
        print(f"\n== {title} ({', '.join(f'{k} = {v}' for k, v in params.items())}), "
              f"{N:,} random points, float64 ==")
        show(loss)
        y, y_pred = data(seed)
        rows = []
        for backend, check in (("numpy", check_numpy), ("torch", check_torch), ("tensorflow", check_tensorflow)):
            extra = (reference,) if backend == "torch" else ()
            rows += [(backend, what, err) for what, err in check(loss, params, y, y_pred, *extra)]
        for backend, what, err in rows:
            ok = err <= RTOL
            failures += not ok
            print(f"  {backend:<11} {what:<62} max rel. error {err:.1e}  {'ok' if ok else 'FAILED'}")
    print("\nall agree" if not failures else f"\n{failures} disagreement(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
