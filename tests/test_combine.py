"""Losses combined in Python (`0.7 * mse + 0.3 * underestimation`): the combination's symbolic gradient
and Hessian-vector product against torch autograd of the weighted sum of the separately generated
modules (float64), and against the same combination written in the loss language."""

from __future__ import annotations

import numpy as np
import pytest

import losscomp
from losscomp.combine import terms_of, weighted_sum

torch = pytest.importorskip("torch")

PULL = "pull(anchor, positive, negative) = sum((anchor - positive)^2)\n  wrt anchor, positive, negative"
SHRINK = "shrink(y, mu, var: positive) = (y - mu)^2 + 0.5 * var\n  wrt mu, var"


def _inputs(names_domains, rng, shape=(6, 4)):
    out = {}
    for name, domain in names_domains:
        if domain == "simplex":
            x = rng.gamma(1.0, size=shape)
            out[name] = x / x.sum(axis=-1, keepdims=True)
        elif domain == "unit":
            out[name] = rng.uniform(0.05, 0.95, size=shape)
        elif domain == "positive":
            out[name] = np.exp(rng.normal(size=shape) * 0.5)
        else:
            out[name] = rng.normal(size=shape) * 2
    return out


def _compiled(term):
    return losscomp.compile(term[0], params=term[1]) if isinstance(term, tuple) else losscomp.compile(term)


# (coefficient, source or (source, params)) terms
CASES = {
    "mse_underestimation": [(0.7, "mse"), (0.3, "underestimation")],
    "robust_mix": [(1, "huber"), (-0.5, ("pinball", {"tau": 0.9})), (0.25, "mse"), (2, "log_cosh")],
    "huber_twice": [(1, "huber"), (1 / 3, ("huber", {"delta": 2.0}))],
    "softmax_mix": [(1, "softmax_ce"), (0.5, "softmax_ce_smooth"), (0.2, "categorical_focal")],
    "triplet_pull": [(1, "triplet"), (0.1, PULL)],
    "gaussian_shrink": [(1, "gaussian_nll"), (0.3, SHRINK)],
}


def _combine(case):
    losses = [(c, _compiled(t)) for c, t in CASES[case]]
    total = None
    for c, loss in losses:
        total = c * loss if total is None else total + c * loss
    return total, losses


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_and_hvp_equal_autodiff_of_the_weighted_sum(case, rng):
    combined, terms = _combine(case)
    assert len(terms_of(combined)) == len(terms)
    names = [(a.name, a.domain) for a in combined.definition.arguments]
    data = _inputs(names, rng)
    mod = combined.build("torch")
    term_modules = [(c, loss.build("torch"), [a.name for a in loss.definition.arguments]) for c, loss in terms]
    tensors = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in data.items()}
    args = [tensors[n] for n, _ in names]

    total = sum(c * m.loss(*args) for c, m, _ in term_modules)
    targets = [tensors[t] for t in combined.targets]
    auto = torch.autograd.grad(total, targets, create_graph=True)
    value = mod.loss(*[t.detach() for t in args])
    np.testing.assert_allclose(value.numpy(), total.detach().numpy(), rtol=1e-12, atol=1e-14)

    grads = mod.grad(*[t.detach() for t in args])
    grads = grads if isinstance(grads, tuple) else (grads,)
    for g, a in zip(grads, auto):
        np.testing.assert_allclose(g.numpy(), a.detach().numpy(), rtol=1e-10, atol=1e-13)

    vs = [torch.tensor(rng.normal(size=t.shape), dtype=torch.float64) for t in targets]
    auto_hvp = torch.autograd.grad(sum((a * v).sum() for a, v in zip(auto, vs)), targets, allow_unused=True)
    hvp = mod.hvp(*[t.detach() for t in args], vs[0] if len(vs) == 1 else tuple(vs))
    hvp = hvp if isinstance(hvp, tuple) else (hvp,)
    for h, a in zip(hvp, auto_hvp):
        expected = np.zeros(h.shape) if a is None else a.numpy()
        np.testing.assert_allclose(h.numpy(), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_source_text_compiles_to_the_same_loss(case, rng):
    """The header's source text is loss language: compiled again, it gives the same values and gradient."""
    combined, _ = _combine(case)
    again = losscomp.compile(combined.definition.text)
    assert [p.name for p in again.definition.parameters] == [p.name for p in combined.definition.parameters]
    names = [(a.name, a.domain) for a in combined.definition.arguments]
    data = _inputs(names, rng)
    a, b = combined.build("numpy"), again.build("numpy")
    np.testing.assert_allclose(a.loss(**data), b.loss(**data), rtol=1e-12)
    ga, gb = a.grad(**data), b.grad(**data)
    for x, y in zip(ga if isinstance(ga, tuple) else (ga,), gb if isinstance(gb, tuple) else (gb,)):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15)


def test_the_seed_pattern_in_one_line_equals_the_language_version(rng):
    combined = 0.7 * losscomp.compile("mse") + 0.3 * losscomp.compile("underestimation")
    written = losscomp.compile("combined(y, y_pred) = 0.7 * mse(y, y_pred) + 0.3 * underestimation(y, y_pred)")
    assert "0.7*mse(y, y_pred) + 0.3*underestimation(y, y_pred)" in combined.emit("torch")
    y, p = rng.normal(size=(50, 1)), rng.normal(size=(50, 1))
    a, b = combined.build("numpy"), written.build("numpy")
    np.testing.assert_allclose(a.loss(y, p), b.loss(y, p), rtol=1e-13)
    np.testing.assert_allclose(a.grad(y, p), b.grad(y, p), rtol=1e-13)
    np.testing.assert_allclose(a.hessian(y, p), b.hessian(y, p), rtol=1e-13)


def test_parameters_that_clash_are_renamed_and_stay_tunable(rng):
    combined = losscomp.compile("huber") + losscomp.compile("huber", params={"delta": 2.0})
    assert [(p.name, float(p.default)) for p in combined.definition.parameters] == [("delta", 1.0),
                                                                                    ("huber_delta", 2.0)]
    assert "huber(y, y_pred, delta = delta) + huber(y, y_pred, delta = huber_delta)" in combined.definition.text
    mod = combined.build("torch")
    y = torch.tensor(rng.normal(size=40) * 3, dtype=torch.float64)
    p = torch.tensor(rng.normal(size=40) * 3, dtype=torch.float64, requires_grad=True)
    expected = torch.nn.functional.huber_loss(p, y, delta=0.5) + torch.nn.functional.huber_loss(p, y, delta=3.0)
    (auto,) = torch.autograd.grad(expected, p)
    np.testing.assert_allclose(mod.loss(y, p.detach(), delta=0.5, huber_delta=3.0).numpy(),
                               expected.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(mod.grad(y, p.detach(), delta=0.5, huber_delta=3.0).numpy(), auto.numpy(),
                               rtol=1e-12)


def test_shared_parameters_with_one_default_stay_one():
    a = losscomp.compile("pinball", params={"tau": 0.9})
    combined = a + 0.5 * a + losscomp.compile("pinball(y, y_pred; tau = 0.9) = relu(tau * (y - y_pred))")
    assert [p.name for p in combined.definition.parameters] == ["tau"]
    assert float(terms_of(combined)[0][0]) == 1.5  # like terms add up


def test_catalog_names_and_sum_mix_in(rng):
    mse = losscomp.compile("mse")
    by_name = mse + "underestimation"
    reflected = "underestimation" + mse
    summed = sum([mse, losscomp.compile("underestimation")])
    y, p = rng.normal(size=30), rng.normal(size=30)
    reference = mse.build("numpy").loss(y, p) + losscomp.compile("underestimation").build("numpy").loss(y, p)
    for loss in (by_name, reflected, summed):
        np.testing.assert_allclose(loss.build("numpy").loss(y, p), reference, rtol=1e-13)
    assert np.float64(2.0) * mse == 2 * mse  # a NumPy number on the left defers to the loss
    assert float(terms_of(-mse)[0][0]) == -1 and float(terms_of(mse / 4)[0][0]) == 0.25
    assert (mse - 0.5 * mse).name == "scaled_mse"
    assert weighted_sum([(1, mse), (2, losscomp.compile("mae"))], name="mixed").name == "mixed"


def test_arguments_of_other_names_are_matched_by_position(rng):
    penalty = losscomp.compile("penalty(truth, guess) = relu(truth - guess)^2")
    combined = losscomp.compile("mse") + 2 * penalty
    assert [a.name for a in combined.definition.arguments] == ["y", "y_pred"]
    y, p = rng.normal(size=30), rng.normal(size=30)
    expected = np.mean((y - p) ** 2) + 2 * np.mean(np.maximum(y - p, 0) ** 2)
    np.testing.assert_allclose(combined.build("numpy").loss(y, p), expected, rtol=1e-13)


def test_domains_narrow_to_the_stricter_one():
    combined = losscomp.compile("mse") + losscomp.compile("bce")
    assert [a.domain for a in combined.definition.arguments] == ["binary", "unit"]


@pytest.mark.parametrize("build, message", [
    (lambda: losscomp.compile("mse") + losscomp.compile("triplet"), "same number"),
    (lambda: losscomp.compile("mse") + losscomp.compile("mae", reduction="sum"), "reduction"),
    (lambda: losscomp.compile("bce") + losscomp.compile("hinge"), "no value is both"),
    (lambda: losscomp.compile("gaussian_nll") + losscomp.compile("gaussian_nll", wrt="mu"), "wrt="),
    (lambda: losscomp.compile("mse") * losscomp.compile("mae"), "linearly"),
    (lambda: losscomp.compile("mse") + 1, "does not change its gradient"),
    (lambda: losscomp.compile("mse") - losscomp.compile("mse"), "cancel"),
    (lambda: losscomp.compile("mse") * float("nan"), "finite"),
    (lambda: losscomp.compile("mse") / 0, "divided by zero"),
    (lambda: losscomp.compile("mse") + [1], "not list"),
    (lambda: losscomp.compile("mse") + "nosuchloss", "nosuchloss"),
    (lambda: weighted_sum([(1, losscomp.compile("mse"))], name="not a name"), "identifier"),
    (lambda: weighted_sum([(1, "mse")]), "compiled loss"),
])
def test_bad_combinations_are_clear_errors(build, message):
    with pytest.raises(losscomp.LossError, match=message):
        build()


def test_reductions_of_the_terms_stay_distinct(rng):
    """Two per-sample terms keep their own sums (internal symbols renamed), and one shared logsumexp."""
    combined = losscomp.compile("softmax_ce") + losscomp.compile("categorical_ce")
    kinds = [r.kind for r in combined.definition.reductions]
    assert kinds.count("logsumexp") == 1 and kinds.count("sum") == 2
    assert len({r.symbol for r in combined.definition.reductions}) == len(kinds)
