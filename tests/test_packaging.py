"""The wheel carries the grammar, and an installed wheel compiles a formula in a fresh environment."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("losscomp-*.whl")
    return path


def test_wheel_contains_grammar_and_catalog(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "losscomp/grammar/loss.lark" in names
    assert "losscomp/catalog/regression.loss" in names
    grammar = zipfile.ZipFile(wheel).read("losscomp/grammar/loss.lark").decode()
    assert grammar == (ROOT / "grammar" / "loss.lark").read_text()


@pytest.mark.slow
def test_installed_wheel_compiles_in_a_fresh_venv(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr
    script = (
        "import losscomp, losscomp.syntax as s\n"
        "print(s.grammar_path())\n"
        "loss = losscomp.compile('max(tau*e, (tau-1)*e)', wrt='e', params={'tau': 0.9})\n"
        "mod = loss.build('numpy')\n"
        "import numpy as np\n"
        "import json\n"
        "print(json.dumps(mod.grad(np.array([-1.0, 2.0]), tau=0.9).tolist()))\n"
    )
    result = subprocess.run([str(python), "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    grammar_line, grad_line = result.stdout.strip().splitlines()
    assert "site-packages" in grammar_line and grammar_line.endswith("losscomp/grammar/loss.lark")
    # mean over 2 elements: e < 0 gives (tau - 1)/2, e > 0 gives tau/2
    assert json.loads(grad_line) == pytest.approx([-0.1 / 2, 0.9 / 2], rel=1e-12)
