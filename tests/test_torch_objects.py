"""The generated nn.Module behaves as torch.nn's own losses do: PyTorch's (input, target) order, the
reduction= keyword, learnable parameters, gradients for every tensor input, and an error where a
broadcast would change the result. Each test compares with the torch.nn loss a user would otherwise
call, or with torch autograd of the formula written in torch (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import losscomp

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _module(source, **compile_options):
    return losscomp.compile(source, **compile_options).build("torch")


def _pair(rng, shape=(7, 3), scale=2.0):
    return (torch.tensor(rng.normal(size=shape) * scale, requires_grad=True),
            torch.tensor(rng.normal(size=shape), requires_grad=True))


def _close(a, b, rtol=1e-12, atol=1e-14):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


# -- the rows -------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("delta", [1.0, 0.5])
def test_huber_takes_reduction_as_torch_nn_huber_loss_does(reduction, delta, rng):
    """`HuberLoss(reduction="sum")` raised "unexpected keyword argument 'reduction'"."""
    mod = _module("huber")
    x, t = _pair(rng)
    x2, t2 = x.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    ours = mod.HuberLoss(reduction=reduction, delta=delta)(x, t)
    theirs = torch.nn.HuberLoss(reduction=reduction, delta=delta)(x2, t2)
    assert ours.shape == theirs.shape
    _close(ours, theirs)
    upstream = torch.tensor(rng.normal(size=tuple(theirs.shape)))
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    _close(x.grad, x2.grad)
    _close(t.grad, t2.grad)  # the target gets its gradient too


def test_forward_takes_input_then_target(rng):
    """Called as PyTorch losses are, `loss(input, target)`: pinball at tau = 0.9 is the 0.9 quantile's loss
    (the language's order (y, y_pred) gave the 0.1 quantile's)."""
    mod = _module("pinball", params={"tau": 0.9})
    prediction, target = _pair(rng, shape=(200,))
    value = mod.PinballLoss(tau=0.9)(prediction, target)
    e = target.detach() - prediction.detach()
    expected = torch.maximum(0.9 * e, -0.1 * e).mean()
    _close(value.detach(), expected)
    assert mod.PinballLoss.ORDER == ("y_pred", "y")
    assert value.item() == pytest.approx(float(mod.loss(target.detach(), prediction.detach(), tau=0.9)), rel=1e-12)
    # keyword calls work as with torch.nn losses
    _close(mod.PinballLoss(tau=0.9)(input=prediction, target=target).detach(), expected)


def test_a_learnable_parameter_gets_its_gradient(rng):
    """A delta with requires_grad through the autograd.Function: delta.grad was None."""
    mod = _module("huber")
    x, t = _pair(rng)
    delta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    value = mod.HuberLoss(delta=delta)(x, t)
    value.backward()
    reference = delta.detach().clone().requires_grad_()
    e = (t.detach() - x.detach()).abs()
    torch.where(e <= reference, 0.5 * e ** 2, reference * (e - 0.5 * reference)).mean().backward()
    assert delta.grad is not None
    _close(delta.grad, reference.grad)
    # the autograd.Function itself, in the definition's order: (reduction, y, y_pred, delta)
    direct = delta.detach().clone().requires_grad_()
    mod.HuberLossFunction.apply("mean", t.detach(), x.detach(), direct).backward()
    _close(direct.grad, reference.grad)


def test_an_nn_parameter_is_registered_and_learned(rng):
    mod = _module("huber")
    module = mod.HuberLoss(delta=torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64)))
    assert [name for name, _ in module.named_parameters()] == ["delta"]
    x, t = _pair(rng)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    before = module.delta.item()
    module(x.detach(), t.detach()).backward()
    optimizer.step()
    assert module.delta.item() != before


@pytest.mark.parametrize("shapes", [((6, 1), (6,)), ((6, 1), (6, 4))])
def test_a_broadcast_that_enlarges_the_input_is_an_error(shapes):
    """torch.nn.MSELoss warns "likely lead to incorrect results due to broadcasting" and goes on."""
    mod = _module("mse")
    x, t = torch.zeros(shapes[0]), torch.zeros(shapes[1])
    with pytest.warns(UserWarning, match="broadcasting"):
        torch.nn.MSELoss()(x, t)
    with pytest.raises(ValueError, match="target of shape"):
        mod.MseLoss()(x, t)


def test_a_target_that_broadcasts_into_the_input_is_fine(rng):
    mod = _module("mse")
    x, t = torch.tensor(rng.normal(size=(6, 4))), torch.tensor(rng.normal(size=(6, 1)))
    _close(mod.MseLoss()(x, t), ((x - t) ** 2).mean())


def test_bad_reduction_is_refused_as_torch_refuses_it():
    mod = _module("mse")
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        mod.MseLoss(reduction="avg")


# -- per-sample losses and losses of more tensors ------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_softmax_cross_entropy_as_torch_cross_entropy(reduction, rng):
    mod = _module("softmax_ce")
    z = torch.tensor(rng.normal(size=(6, 5)) * 3, requires_grad=True)
    y = torch.softmax(torch.tensor(rng.normal(size=(6, 5))), -1)
    z2 = z.detach().clone().requires_grad_()
    ours = mod.SoftmaxCeLoss(reduction=reduction)(z, y)
    theirs = F.cross_entropy(z2, y, reduction=reduction)
    assert ours.shape == theirs.shape
    _close(ours, theirs)
    upstream = torch.tensor(rng.normal(size=tuple(theirs.shape)))  # signs mixed: both parts of the weights
    (ours * upstream).sum().backward()
    (theirs * upstream).sum().backward()
    _close(z.grad, z2.grad)


def test_sparse_labels_as_torch_cross_entropy(rng):
    mod = _module("sparse_softmax_ce", reduction="sum")
    z = torch.tensor(rng.normal(size=(8, 4)), requires_grad=True)
    labels = torch.tensor(rng.integers(0, 4, size=8))
    z2 = z.detach().clone().requires_grad_()
    ours = mod.SparseSoftmaxCeLoss(reduction="mean")(z, labels)
    theirs = F.cross_entropy(z2, labels)
    _close(ours, theirs)
    ours.backward()
    theirs.backward()
    _close(z.grad, z2.grad)


def test_gaussian_nll_in_torch_order(rng):
    """forward(input, target, var) as torch.nn.GaussianNLLLoss; gradients reach the mean and the variance."""
    mod = _module("gaussian_nll")
    mu = torch.tensor(rng.normal(size=(9, 2)), requires_grad=True)
    var = torch.tensor(rng.uniform(0.5, 2.0, size=(9, 1)), requires_grad=True)
    y = torch.tensor(rng.normal(size=(9, 2)))
    mu2, var2 = mu.detach().clone().requires_grad_(), var.detach().clone().requires_grad_()
    ours = mod.GaussianNllLoss()(mu, y, var)
    theirs = torch.nn.GaussianNLLLoss()(mu2, y, var2)
    _close(ours, theirs)
    ours.backward()
    theirs.backward()
    _close(mu.grad, mu2.grad)
    _close(var.grad, var2.grad)
    assert mod.GaussianNllLoss.ORDER == ("mu", "y", "var")


def test_triplet_keeps_the_definition_order(rng):
    mod = _module("triplet")
    a, p, n = (torch.tensor(rng.normal(size=(5, 3)), requires_grad=True) for _ in range(3))
    value = mod.TripletLoss(margin=0.5)(a, p, n)
    value.backward()
    refs = [x.detach().clone().requires_grad_() for x in (a, p, n)]
    ra, rp, rn = refs
    torch.relu(((ra - rp) ** 2).sum(-1) - ((ra - rn) ** 2).sum(-1) + 0.5).mean().backward()
    for got, ref in zip((a, p, n), refs):
        _close(got.grad, ref.grad)


# -- names, compilation -------------------------------------------------------------------------

def test_user_names_that_are_template_names(rng):
    """Arguments named like the template's own names (upstream, ctx, torch, input, grad) change nothing."""
    source = "odd(input, upstream; ctx = 0.5) = ctx * (input - upstream)^2 + relu(upstream - input)"
    mod = _module(source)
    target, prediction = _pair(rng, shape=(11,))
    target2, prediction2 = target.detach().clone().requires_grad_(), prediction.detach().clone().requires_grad_()
    value = mod.OddLoss(ctx=0.5)(prediction, target)  # input=prediction (upstream), target=input
    value.backward()
    expected = (0.5 * (target2 - prediction2) ** 2 + torch.relu(prediction2 - target2)).mean()
    expected.backward()
    _close(value, expected)
    _close(prediction.grad, prediction2.grad)
    _close(target.grad, target2.grad)


def test_module_under_torch_compile(rng):
    mod = _module("huber")
    module = torch.compile(mod.HuberLoss(reduction="sum", delta=0.5))
    x, t = _pair(rng)
    x2 = x.detach().clone().requires_grad_()
    module(x, t.detach()).backward()
    torch.nn.HuberLoss(reduction="sum", delta=0.5)(x2, t.detach()).backward()
    _close(x.grad, x2.grad)


@pytest.mark.parametrize("compiled", ["mean", "sum", "none"])
def test_every_compiled_reduction_gives_every_module_reduction(compiled, rng):
    """The module's backward goes through grad(sample_weight=...) whatever reduction the module was compiled
    with (for 'mean', positive and negative weights separately)."""
    mod = _module("log_cosh", reduction=compiled)
    for reduction in ("mean", "sum", "none"):
        x, t = _pair(rng, shape=(4, 6))
        x2 = x.detach().clone().requires_grad_()
        ours = mod.LogCoshLoss(reduction=reduction)(x, t.detach())
        e = x2 - t.detach()
        values = e + F.softplus(-2 * e) - np.log(2.0)
        theirs = {"mean": values.mean(), "sum": values.sum(), "none": values}[reduction]
        upstream = torch.tensor(rng.normal(size=tuple(theirs.shape)))
        (ours * upstream).sum().backward()
        (theirs * upstream).sum().backward()
        _close(ours.detach(), theirs.detach())
        _close(x.grad, x2.grad)


def test_an_argument_named_torch_and_a_parameter_named_grad(rng):
    mod = _module("odd(torch, y_pred; grad = 2) = grad * (torch - y_pred)^2 + relu(y_pred - torch)")
    prediction, target = _pair(rng, shape=(9,))
    prediction2 = prediction.detach().clone().requires_grad_()
    value = mod.OddLoss(grad=3.0, reduction="sum")(prediction, target.detach())
    value.backward()
    e = target.detach() - prediction2
    (3.0 * e ** 2 + torch.relu(-e)).sum().backward()
    _close(prediction.grad, prediction2.grad)
