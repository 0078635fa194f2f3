"""`check(..., arguments=...)` and the default argument mapping: right implementations written in
PyTorch's (input, target) or Keras' (y_true, y_pred) order agree, their mirror images (the residual the
other way round) get swapped_arguments, and the frameworks' own loss objects agree with the catalog."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

import losscomp
from losscomp.cli import main
from losscomp.verify import CheckInputError

torch = pytest.importorskip("torch")
POINTS = 600
TAU = {"tau": 0.9}


def _check(fn, against="pinball", params=TAU, **kw):
    return losscomp.check(fn, against=against, params=params, points=POINTS, **kw)


# -- right and wrong, in each framework's order --------------------------------------------------------

def pinball_input_target(input, target, tau=0.9):
    e = target - input
    return torch.mean(torch.maximum(tau * e, (tau - 1) * e))


def pinball_input_target_reversed(input, target, tau=0.9):
    e = input - target  # the residual the other way round: the 0.1 quantile
    return torch.mean(torch.maximum(tau * e, (tau - 1) * e))


def pinball_keras_names_reordered(y_pred, y_true):
    e = y_true - y_pred
    return np.mean(np.maximum(0.9 * e, -0.1 * e))


def pinball_unnamed(a, b, quantile=0.5):
    e = b - a
    return np.mean(np.maximum(quantile * e, (quantile - 1) * e))


class PinballModule(torch.nn.Module):
    """A torch loss module with names no framework uses: PyTorch's order (prediction first) is assumed."""

    def forward(self, first, second):
        e = second - first
        return torch.mean(torch.maximum(0.9 * e, -0.1 * e))


class PinballModuleFormulaOrder(torch.nn.Module):
    def forward(self, first, second):
        e = first - second
        return torch.mean(torch.maximum(0.9 * e, -0.1 * e))


def test_pytorch_names_map_input_to_the_prediction():
    report = _check(pinball_input_target)
    assert report.verdict == "agrees", str(report)
    assert report.call == "pinball_input_target(input=<y_pred>, target=<y>, tau=0.9)"
    assert any("frameworks' names" in n for n in report.notes)


def test_the_mirror_image_in_pytorch_names_is_swapped():
    report = _check(pinball_input_target_reversed)
    assert report.verdict == "differs" and report.codes == ["swapped_arguments"], str(report)


def test_keras_names_in_either_order():
    assert _check(pinball_keras_names_reordered).verdict == "agrees"


def test_a_module_takes_pytorchs_order_by_default():
    assert _check(PinballModule()).verdict == "agrees"
    report = _check(PinballModuleFormulaOrder())
    assert report.verdict == "differs" and report.codes == ["swapped_arguments"]
    mapped = _check(PinballModuleFormulaOrder(), arguments={"y": "first", "y_pred": "second"})
    assert mapped.verdict == "agrees" and mapped.call == "PinballModuleFormulaOrder()(first=<y>, second=<y_pred>)"


def test_explicit_mapping_of_arguments_and_parameters():
    report = _check(pinball_unnamed, arguments={"y_pred": "a", "y": "b", "tau": "quantile"})
    assert report.verdict == "agrees", str(report)
    assert report.call == "pinball_unnamed(a=<y_pred>, b=<y>, quantile=0.9)"
    # the same function in the formula's order by default: quantile stays 0.5, and a, b are exchanged
    assert _check(pinball_unnamed).verdict == "differs"


def test_the_mapping_applies_to_gradients():
    def grad(input, target):
        e = target - input
        return np.where(e > 0, -0.9, 0.1) / e.size

    assert _check(grad, kind="grad").verdict in ("agrees", "agrees_except_kinks")


# -- the frameworks' own losses --------------------------------------------------------------------

def test_torch_losses_by_their_names():
    poisson = torch.nn.PoissonNLLLoss(log_input=True, full=False)
    assert losscomp.check(poisson, against="poisson_nll", points=POINTS).verdict == "agrees"
    bce = losscomp.check(torch.nn.BCEWithLogitsLoss(), against="bce_logits", points=POINTS)
    assert bce.verdict == "agrees", str(bce)
    assert bce.call == "BCEWithLogitsLoss()(input=<z>, target=<y>)"


def test_a_keras_loss_object():
    keras = pytest.importorskip("keras")
    report = losscomp.check(keras.losses.BinaryCrossentropy(from_logits=True), against="bce_logits",
                            points=POINTS)
    assert report.verdict == "agrees", str(report)


# -- bad mappings ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mapping, message", [
    ({"yy": "a"}, "not an argument or parameter of the formula; did you mean 'y'"),
    ({"y": "c"}, "has no parameter 'c'"),
    ({"y": "a", "y_pred": "a"}, "two formula arguments to 'a'"),
    ("y=a", "maps formula arguments"),
    ({"y": 3}, "give the function's parameter name"),
])
def test_bad_mappings_are_clear_errors(mapping, message):
    with pytest.raises(CheckInputError, match=message):
        _check(pinball_unnamed, arguments=mapping)


def test_a_function_that_needs_more_than_the_formula_gives():
    def three(a, b, c):
        return a

    with pytest.raises(CheckInputError, match="requires c"):
        _check(three, arguments={"y": "a", "y_pred": "b"})


# -- the command -------------------------------------------------------------------------------------

def test_check_command_takes_the_mapping(tmp_path, capsys):
    module = tmp_path / "quantile_losses.py"
    module.write_text(textwrap.dedent("""
        import numpy as np

        def pinball(a, b, quantile=0.5):
            e = b - a
            return np.mean(np.maximum(quantile * e, (quantile - 1) * e))
    """))
    base = ["check", f"{module}:pinball", "--against", "pinball", "--param", "tau=0.9", "--points", str(POINTS)]
    assert main([*base, "--arguments", "y_pred=a,y=b,tau=quantile"]) == 0
    assert "AGREES" in capsys.readouterr().out
    assert main(base) == 1
    capsys.readouterr()
    assert main([*base, "--arguments", "y_pred:a"]) == 2
    assert "FORMULA_ARGUMENT=PARAMETER" in capsys.readouterr().err
    assert main([*base, "--arguments", "y_pred=zz"]) == 2
    assert "has no parameter 'zz'" in capsys.readouterr().err


def test_the_generated_framework_objects_check_as_their_formula():
    """The generated nn.Module (input, target) and Keras loss (y_true, y_pred) need no mapping."""
    report = losscomp.check(losscomp.compile("pinball").build("torch").PinballLoss(tau=0.9), "pinball",
                            params=TAU, points=POINTS)
    assert report.verdict in ("agrees", "agrees_except_kinks"), str(report)
    pytest.importorskip("tensorflow")
    keras_loss = losscomp.compile("pinball").build("tensorflow").PinballLoss(tau=0.9, dtype="float64")
    report = losscomp.check(keras_loss, "pinball", params=TAU, points=POINTS)
    assert report.verdict in ("agrees", "agrees_except_kinks"), str(report)
