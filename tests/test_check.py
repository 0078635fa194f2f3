"""`losscomp.check` and `losscomp check`: the seed documents' implementations get the verdicts derived
in examples/check_seed_implementations.py, a corpus of wrong implementations gets the right
diagnosis, correct ones written differently agree, and the command's exit codes and JSON hold."""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import losscomp
from losscomp.cli import main
from losscomp.testing import assert_matches
from losscomp.verify import CODES, CheckInputError

ROOT = Path(__file__).resolve().parents[1]
POINTS = 2000
torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from check_corpus import numpy_cases, tensorflow_cases, torch_cases  # noqa: E402

CORPUS = {"numpy": numpy_cases, "torch": torch_cases, "tensorflow": tensorflow_cases}


def _load_seeds():
    spec = importlib.util.spec_from_file_location("check_seed_implementations",
                                                  ROOT / "examples" / "check_seed_implementations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SEEDS = _load_seeds()


# -- the seed documents ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS.SEEDS, ids=lambda s: s.fn.__class__.__name__ if s.name.startswith("Huber")
                         else s.name.split()[0].split("(")[0])
def test_seed_implementation_gets_the_derived_verdict(seed):
    report = SEEDS.run(seed, POINTS)
    assert SEEDS.as_expected(seed, report), str(report)


def test_seed_regions_are_the_clipping_thresholds():
    by_name = {s.name: s for s in SEEDS.SEEDS}
    bce = SEEDS.run(by_name["bce_gradient"], POINTS).diagnosis[0]
    assert bce.detail["region"]["condition"] == "(y == 0 and p > 1 - 1e-15) or (y == 1 and p < 1e-15)"
    focal = SEEDS.run(by_name["focal_loss()"], POINTS)
    assert {d.detail["region"]["condition"] for d in focal.diagnosis} == {"y == 1 and p < 1e-07"}
    prose = SEEDS.run(by_name["∇MSE = 2/n (y − ŷ)"], POINTS).diagnosis[0]
    assert prose.detail["matches"] == "d loss/d y"
    cce = SEEDS.run(by_name["cce_gradient"], POINTS).diagnosis[0]
    assert cce.detail["offset"] == pytest.approx(1 / (POINTS // 4))


# -- the corpus -----------------------------------------------------------------------------------

WRONG = [(fw, case) for fw, module in CORPUS.items() for case in module.WRONG]
RIGHT = [(fw, case) for fw, module in CORPUS.items() for case in module.RIGHT]


def _check(case):
    return losscomp.check(case.fn, against=case.against, kind=case.kind, params=case.params or None, points=POINTS)


def test_corpus_size():
    assert len(WRONG) >= 20 and len(RIGHT) >= 10
    for code in CODES:
        assert sum(case.expect == code for _, case in WRONG) >= 2, code
    assert {fw for fw, _ in WRONG} == {fw for fw, _ in RIGHT} == set(CORPUS)


@pytest.mark.parametrize("framework, case", WRONG, ids=[f"{fw}-{c.id}" for fw, c in WRONG])
def test_wrong_implementation_gets_its_diagnosis(framework, case):
    report = _check(case)
    assert report.framework == framework
    assert report.verdict == "differs"
    assert report.codes == [case.expect], str(report)


@pytest.mark.parametrize("framework, case", RIGHT, ids=[f"{fw}-{c.id}" for fw, c in RIGHT])
def test_right_implementation_agrees(framework, case):
    report = _check(case)
    assert report.framework == framework
    assert report.verdict == case.expect, str(report)


# -- calling conventions --------------------------------------------------------------------------

def test_arguments_by_name_when_the_names_match_else_by_position():
    def by_name(y_pred, y):      # the formula's names, in the other order
        return (y - y_pred) ** 2

    def by_position(target, guess):
        return (target - guess) ** 2

    assert losscomp.check(by_name, against="mse", points=400).verdict == "agrees"
    report = losscomp.check(by_position, against="mse", points=400)
    assert report.verdict == "agrees" and report.call == "by_position(target=<y>, guess=<y_pred>)"


def test_parameters_go_to_parameters_of_the_same_name():
    def huber(y, y_pred, delta=1.0):
        e = np.abs(y - y_pred)
        return np.where(e <= delta, 0.5 * e ** 2, delta * (e - 0.5 * delta))

    report = losscomp.check(huber, against="huber", params={"delta": 2.5}, points=400)
    assert report.verdict == "agrees" and "delta=2.5" in report.call
    partial = functools.partial(huber, delta=2.5)
    assert losscomp.check(partial, against="huber", params={"delta": 2.5}, points=400).verdict == "agrees"


def test_framework_is_detected_or_given():
    numpy_fn = numpy_cases.mse_dot
    assert losscomp.check(numpy_fn, against="mse", points=400).framework == "numpy"
    assert losscomp.check(lambda y, p: torch.mean((y - p) ** 2), against="mse", points=400).framework == "torch"
    assert losscomp.check(lambda y, p: tf.reduce_mean((y - p) ** 2), against="mse", points=400).framework == \
        "tensorflow"
    report = losscomp.check(lambda y, p: ((y - p) ** 2).mean(), against="mse", framework="pytorch", points=400)
    assert report.framework == "torch" and report.verdict == "agrees"
    assert any("torch.autograd" in c.name for c in report.comparisons)


def test_one_dimensional_functions_are_called_with_flat_arrays():
    def mse(y, y_pred):
        e = y - y_pred
        return np.dot(e, e) / len(e)   # a dot product of 2-D arrays would not be the sum of squares

    report = losscomp.check(mse, against="mse", points=400)
    assert report.verdict == "agrees" and any("1-D" in n for n in report.notes)


def test_sum_reduction_on_request():
    report = losscomp.check(torch_cases.mse_sum, against="mse", reduction="sum", points=400)
    assert report.verdict == "agrees"


def test_bad_input_is_a_loss_error_with_a_clear_message():
    with pytest.raises(CheckInputError, match=r"takes \(y\), but the formula has 2 argument"):
        losscomp.check(lambda y: y, against="mse")
    with pytest.raises(CheckInputError, match="kind must be one of"):
        losscomp.check(numpy_cases.mse_dot, against="mse", kind="gradient")
    with pytest.raises(CheckInputError, match="pass an instance"):
        losscomp.check(SEEDS.HuberLoss, against="huber")

    def broken(y, y_pred):
        raise ZeroDivisionError("oops")

    with pytest.raises(CheckInputError, match="raised ZeroDivisionError: oops"):
        losscomp.check(broken, against="mse")
    assert issubclass(CheckInputError, losscomp.LossError)


# -- the report -----------------------------------------------------------------------------------

def test_report_as_text_and_json():
    report = losscomp.check(numpy_cases.mse_grad_half, against="mse", kind="grad", points=POINTS)
    assert report.codes == ["scale_factor"]
    (diagnosis,) = report.diagnosis
    assert diagnosis.detail["factor"] == pytest.approx(0.5) and diagnosis.detail["as"] == "1/2"
    data = json.loads(report.to_json())
    assert data["verdict"] == "differs" and data["diagnosis"][0]["code"] == "scale_factor"
    assert data["max_rel_error"] == pytest.approx(report.max_rel_error) and data["worst_input"]
    text = str(report)
    assert text.startswith("check mse_grad_half against mse (grad, numpy): DIFFERS")
    table = [line for line in text.splitlines() if line.endswith(("random", "edge", "kink"))]
    assert 0 < len(table) <= 5


def test_assert_matches():
    assert assert_matches(numpy_cases.mse_dot, "mse", points=400).verdict == "agrees"
    assert_matches(torch_cases.pinball_relu, "pinball", params={"tau": 0.9}, points=400)
    with pytest.raises(AssertionError, match="sign_flip"):
        assert_matches(numpy_cases.mse_grad_prose, "mse", kind="grad", points=400)
    with pytest.raises(AssertionError, match="AGREES EXCEPT AT KINKS"):
        assert_matches(torch_cases.pinball_relu, "pinball", params={"tau": 0.9}, allow_kinks=False, points=400)


# -- the command ----------------------------------------------------------------------------------

CASES = "tests/check_corpus/numpy_cases.py"


def test_check_command_exit_codes(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(["check", f"{CASES}:mse_dot", "--against", "mse", "--points", "400"]) == 0
    assert "AGREES" in capsys.readouterr().out
    assert main(["check", f"{CASES}:mse_grad_prose", "--against", "mse", "--kind", "grad", "--points", "400"]) == 1
    assert "sign_flip" in capsys.readouterr().out
    assert main(["check", f"{CASES}:pinball", "--against", "mse"]) == 2
    assert "has no attribute 'pinball'" in capsys.readouterr().err
    assert main(["check", "no_such_module_xyz:f", "--against", "mse"]) == 2
    assert "cannot import no_such_module_xyz" in capsys.readouterr().err


def test_check_command_bad_modules(tmp_path, capsys):
    (tmp_path / "broken.py").write_text("def f(y, y_pred:\n    return 0\n")
    assert main(["check", f"{tmp_path / 'broken.py'}:f", "--against", "mse"]) == 2
    err = capsys.readouterr().err
    assert "SyntaxError" in err and "Traceback" not in err
    (tmp_path / "one.py").write_text("def f(x):\n    return x\n")
    assert main(["check", f"{tmp_path / 'one.py'}:f", "--against", "mse", "--json"]) == 2
    out = capsys.readouterr().out
    assert json.loads(out)["exit"] == 2 and out.count("\n") == 1


def test_check_command_json_is_one_object(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["check", f"{CASES}:bce_gradient_clipped", "--against", "bce", "--kind", "grad", "--json",
                 "--points", "400"])
    out = capsys.readouterr().out
    data = json.loads(out)
    assert code == 1 and out.count("\n") == 1
    assert data["verdict"] == "differs" and [d["code"] for d in data["diagnosis"]] == ["clipped_gradient"]


def test_check_command_instantiates_classes_and_calls_factories(capsys):
    examples = "examples/check_seed_implementations.py"
    assert main(["check", f"{ROOT / examples}:HuberLoss", "--against", "huber", "--points", "400"]) == 0
    assert "torch" in capsys.readouterr().out
    assert main(["check", f"{ROOT / examples}:focal_loss()", "--against", SEEDS.FOCAL, "--points", "400"]) == 1
    assert "clipped_gradient" in capsys.readouterr().out


def test_check_command_in_a_fresh_process():
    result = subprocess.run([sys.executable, "-m", "losscomp", "check", f"{CASES}:mse_grad_half", "--against",
                             "mse", "--kind", "grad", "--json", "--points", "400"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["diagnosis"][0]["code"] == "scale_factor"
