"""The command line: compile writes a standalone, deterministic module; bad input exits 2 cleanly."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PINBALL = "max(tau*e, (tau-1)*e)"


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "losscomp", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


@pytest.fixture(scope="module")
def pinball_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "pinball.py"
    result = run_cli("compile", PINBALL, "--wrt", "e", "--param", "tau=0.9", "--backend", "torch", "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_compiled_file_imports_only_torch_and_math(pinball_file):
    assert imported_modules(pinball_file.read_text()) <= {"torch", "math"}
    assert "torch" in imported_modules(pinball_file.read_text())


def test_compiled_file_runs_without_losscomp(pinball_file):
    # Make `import losscomp` fail in the child, then run the file and use it.
    script = (
        "import sys, runpy\n"
        "sys.modules['losscomp'] = None\n"
        f"mod = runpy.run_path({str(pinball_file)!r})\n"
        "import torch\n"
        "e = torch.tensor([-2.0, -0.5, 0.5, 3.0], dtype=torch.float64)\n"
        "g = mod['grad'](e, tau=0.9)\n"
        "expected = torch.tensor([-0.1, -0.1, 0.9, 0.9], dtype=torch.float64) / 4\n"
        "assert torch.allclose(g, expected, rtol=1e-12, atol=0), g\n"
        "assert abs(float(mod['loss'](e, tau=0.9)) - float((0.1*2 + 0.1*0.5 + 0.9*0.5 + 0.9*3) / 4)) < 1e-12\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=pinball_file.parent,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("backend", ["numpy", "torch", "tensorflow", "jax"])
def test_compile_is_byte_identical_across_processes(tmp_path, backend):
    outputs = []
    for seed in ("0", "12345"):
        out = tmp_path / f"{seed}.py"
        result = run_cli("compile", "huber", "--backend", backend, "-o", str(out), env={"PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_pinball_file_is_byte_identical_when_compiled_again(pinball_file, tmp_path):
    again = tmp_path / "again.py"
    result = run_cli("compile", PINBALL, "--wrt", "e", "--param", "tau=0.9", "--backend", "torch", "-o", str(again),
                     env={"PYTHONHASHSEED": "777"})
    assert result.returncode == 0, result.stderr
    assert again.read_bytes() == pinball_file.read_bytes()


MALFORMED = [
    ("unbalanced parenthesis", "f(y, p) = (y - p", 1, 11, "unbalanced parenthesis"),
    ("unknown function", "f(y, p) = -y * lgo(p)", 1, 16, "did you mean 'log'"),
    ("self-referring binding", "f(y, p) = e * 2\n  where e = e + 1", 2, 9, "refers to itself"),
    ("undefined name", "f(y, p) = (y - q)^2", 1, 16, "unknown name 'q'"),
    ("python injection", "__import__('os')", 1, 12, "unexpected character"),
]


@pytest.mark.parametrize("what, source, line, column, phrase", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_formula_exits_2_with_line_and_column(tmp_path, what, source, line, column, phrase):
    marker = tmp_path / "executed"
    result = run_cli("compile", source, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"line {line}, column {column}" in result.stderr
    assert phrase in result.stderr
    assert "Traceback" not in result.stderr
    assert "^" in result.stderr  # the caret under the place
    assert len(result.stderr.splitlines()) <= 4  # short
    assert not marker.exists()


def test_injection_attempts_execute_nothing(tmp_path):
    marker = tmp_path / "pwned"
    for source in [f"__import__('os').system('touch {marker}')",
                   f"f(y, p) = __import__(os).system(touch)",
                   "f(y, p) = exec(p)", "f(y, p) = eval(y)"]:
        result = run_cli("derive", source, cwd=tmp_path)
        assert result.returncode == 2, (source, result.stderr)
        assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_derive_prints_plain_math_and_latex():
    result = run_cli("derive", PINBALL, "--wrt", "e", "--param", "tau=0.9")
    assert result.returncode == 0, result.stderr
    assert "dl/de = (if e > 0 then tau else (if e < 0 then tau - 1 else tau - 1/2))" in result.stdout
    latex = run_cli("derive", "huber", "--latex")
    assert latex.returncode == 0, latex.stderr
    assert r"\frac{\partial \ell}{\partial y_{pred}}" in latex.stdout


def test_bad_options_exit_2():
    assert run_cli("compile", "huber", "--param", "delta").returncode == 2
    assert run_cli("compile", "huber", "--param", "gamma=2").returncode == 2
    assert run_cli("compile", "huber", "--wrt", "z").returncode == 2
    assert run_cli("compile", "nosuchfile.loss").returncode == 2


def test_list_shows_the_catalog():
    result = run_cli("list")
    assert result.returncode == 0
    for name in ("mse", "huber", "pinball", "bce_logits", "tukey", "cauchy"):
        assert name in result.stdout
