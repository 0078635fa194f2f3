"""losscomp.plot draws what the emitted NumPy code computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import losscomp
from losscomp.plot import curves, plot

pytest.importorskip("matplotlib")


def test_regression_curves_are_the_loss_of_the_error():
    (curve,) = curves(losscomp.compile("huber", params={"delta": 1.0}))
    e = curve.x
    expected = np.where(np.abs(e) <= 1, 0.5 * e**2, np.abs(e) - 0.5)
    np.testing.assert_allclose(curve.value, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(curve.gradient, np.clip(e, -1, 1), rtol=1e-12, atol=1e-15)


def test_classification_curves_per_label():
    labels = [c.label for c in curves(losscomp.compile("hinge"))]
    assert labels == ["hinge (y=1)", "hinge (y=-1)"]
    bce = curves(losscomp.compile("bce"))
    assert bce[0].x.min() > 0 and bce[0].x.max() < 1  # probabilities stay inside (0, 1)
    np.testing.assert_allclose(bce[0].value, -np.log(bce[0].x), rtol=1e-12)


def test_plot_writes_a_png(tmp_path):
    out = plot(["mse", "mae", "huber"], str(tmp_path / "losses.png"), gradient=True)
    data = Path(out).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_per_sample_losses_are_refused():
    with pytest.raises(losscomp.LossError, match="elementwise"):
        curves(losscomp.compile("softmax_ce"))


def test_cli_plot(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "seed.png"
    result = subprocess.run([sys.executable, "-m", "losscomp", "plot", "mse", "mae", "huber", "--gradient",
                             "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    refused = subprocess.run([sys.executable, "-m", "losscomp", "plot", "softmax_ce", "-o", str(tmp_path / "ce.png")],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "elementwise" in refused.stderr and "Traceback" not in refused.stderr
