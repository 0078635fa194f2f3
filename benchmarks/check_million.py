"""How long `losscomp.check` takes on 10^6 points (the acceptance bound is 10 s).

For each hand-written function: one check in a fresh state (the formula compiled, the reference
module built, everything sampled: "first"), then the median of three more ("again"). Framework
imports happen before any timing. Writes benchmarks/results/check_million.md.

    python benchmarks/check_million.py [--points 1000000] [--output benchmarks/results/check_million.md]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

import losscomp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def huber_numpy(y, y_pred, delta=1.0):
    """Per element, unreduced (as a Keras loss returns it)."""
    e = y - y_pred
    return np.where(np.abs(e) <= delta, 0.5 * e ** 2, delta * (np.abs(e) - 0.5 * delta))


def mse_mean_numpy(y_true, y_pred):
    """A scalar: compared whole, then one element at a time at the edges, kinks and some random points."""
    return np.mean((y_true - y_pred) ** 2)


def mse_gradient(y_true, y_pred):
    return 2 * (y_pred - y_true) / y_true.size


def pinball_torch(y, y_pred, tau=0.9):
    """A scalar, so also torch.autograd of it against the symbolic gradient on every point."""
    e = y - y_pred
    return torch.maximum(tau * e, (tau - 1) * e).mean()


def huber_tensorflow(y_true, y_pred, delta=1.0):
    error = y_true - y_pred
    small = tf.abs(error) <= delta
    return tf.where(small, 0.5 * tf.square(error), delta * (tf.abs(error) - 0.5 * delta))


def bce_gradient_clipped(y_true, y_pred, epsilon=1e-15):
    """A wrong one: the diagnosis (region search and bisection) costs extra calls."""
    y_pred = np.clip(y_pred, epsilon, 1 - epsilon)
    return (y_pred - y_true) / (y_pred * (1 - y_pred) * y_true.size)


CASES = [
    ("huber, NumPy, per element", huber_numpy, "huber", "loss", {}),
    ("mse, NumPy, mean", mse_mean_numpy, "mse", "loss", {}),
    ("mse gradient, NumPy", mse_gradient, "mse", "grad", {}),
    ("pinball, PyTorch, mean + autograd", pinball_torch, "pinball", "loss", {"tau": 0.9}),
    ("huber, TensorFlow, per element + GradientTape", huber_tensorflow, "huber", "loss", {}),
    ("bce gradient, NumPy, clipped (differs)", bce_gradient_clipped, "bce", "grad", {}),
]


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()} {platform.machine()}, {cpu}, nproc {os.cpu_count()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "check_million.md"))
    args = parser.parse_args(argv)
    rows = []
    for label, fn, against, kind, params in CASES:
        start = time.perf_counter()
        report = losscomp.check(fn, against=against, kind=kind, params=params or None, points=args.points)
        first = time.perf_counter() - start
        again = []
        for _ in range(3):
            start = time.perf_counter()
            losscomp.check(fn, against=against, kind=kind, params=params or None, points=args.points)
            again.append(time.perf_counter() - start)
        rows.append((label, report.sample["units"], report.verdict, ", ".join(report.codes) or "-", first,
                     statistics.median(again)))
        print(f"{label:<48} {report.sample['units']:>9,} {report.verdict:<20} first {first:6.2f} s, "
              f"again {statistics.median(again):6.2f} s", flush=True)
    lines = [
        "# losscomp.check on 10^6 points",
        "",
        f"Command: `python benchmarks/check_million.py --points {args.points}`. \"first\" is one check in a "
        "fresh process state (the formula compiled, the reference module built); \"again\" the median of "
        "three more. Framework imports are not timed. The acceptance bound is 10 s.",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {_machine()}",
        f"- versions: python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"tensorflow {tf.__version__}, losscomp {losscomp.__version__}",
        f"- load average before the last case: {', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "",
        "| function | points | verdict | diagnosis | first s | again s |",
        "|---|---:|---|---|---:|---:|",
    ]
    lines += [f"| {a} | {b:,} | {c} | {d} | {e:.2f} | {f:.2f} |" for a, b, c, d, e, f in rows]
    Path(args.output).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0 if all(r[4] < 10 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
