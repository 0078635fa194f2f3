"""Every script in examples/ runs: each in a fresh process with its fast setting, writing its figures to
a temporary directory, exiting 0, and printing the line that says what it shows. The README lists
every one of them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# script -> (arguments besides --output, figures it writes, a pattern its output matches)
RUNS = {
    "keras_combined_loss.py": (["--fast"], ["keras_combined_loss.png"],
                               r"underestimation_penalty vs underestimation: differs, swapped_arguments"),
    "weighted_ce_boundary.py": (["--fast"], ["weighted_ce_boundary.png"], r"weighted CE \+ 0\.2 boundary"),
    "quantile_regression.py": (["--fast"], ["quantile_regression.png"], r"tau = 0\.9: 0\.[89]\d\d"),
    "focal_loss.py": (["--fast"], ["focal_loss.png"], r"average precision"),
    "triplet_model.py": (["--fast"], ["triplet_model.png"], r"after  training: held-out triplets"),
    "dice_segmentation.py": (["--fast"], ["dice_segmentation.png"], r"Dice\s+held-out IoU"),
    "torch_huber_training.py": (["--fast"], ["torch_huber_training.png"], r"same loss at every step: True"),
    "regularization.py": (["--fast"], ["regularization.png"], r"differs, constant_offset"),
    "loss_plots.py": (["--fast"], ["regression_losses.png", "probability_losses.png", "margin_losses.png"],
                      r"largest difference 0\.0e\+00"),
    "training_monitor.py": (["--fast"], ["training_monitor.png"], r"equals the loss at every step: True"),
    "check_seed_implementations.py": (["--points", "1000"], [], r"14 of 14 verdicts as derived"),
    "demo.py": ([], [], r"all agree"),
}
ELSEWHERE = {"newton_vs_gd.py": "tests/test_fit.py::test_example_runs",
             "gbdt_quantile.py": "tests/test_boosting.py"}


def test_every_script_is_run_here_or_elsewhere():
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(RUNS) | set(ELSEWHERE)


def test_the_readme_lists_every_example():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in sorted(set(RUNS) | set(ELSEWHERE)) if f"examples/{name}" not in readme]
    assert not missing, f"the README does not list {missing}"


@pytest.mark.parametrize("script", sorted(RUNS))
def test_example_runs(script, tmp_path):
    arguments, figures, pattern = RUNS[script]
    if script not in ("check_seed_implementations.py", "demo.py"):
        arguments = [*arguments, "--output", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "TF_CPP_MIN_LOG_LEVEL": "3",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(EXAMPLES / script), *arguments], capture_output=True, text=True,
                         timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(pattern, run.stdout), run.stdout
    for figure in figures:
        assert (tmp_path / figure).stat().st_size > 10_000, figure
