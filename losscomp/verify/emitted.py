"""`losscomp verify`: every emitted function of a loss against references it shares no code with.

    mpmath      the SymPy expressions evaluated at 50 digits (`evaluate`): loss, gradient, Hessian;
                for a loss that reduces per sample, 50-digit central differences of its values
    sympy       the symbolic gradient and Hessian against 50-digit central differences of the loss
                and of the gradient: an independent check of `derive`
    differences the emitted gradient and Hessian against float64 central differences of the
                emitted loss and gradient (points whose stencil straddles a kink are skipped)
    autodiff    torch.autograd / tf.GradientTape of the emitted loss against the emitted grad and
                hessian (on kinks a framework may pick another subgradient: reported, not failed)
    dtype       float32 in gives float32 out

Tolerances: |emitted - true| <= RTOL |true| + ATOL * (typical size of the true values). Points whose
true value is beyond float64 (exp(800), 1/p^2 at p = 1e-300) are not compared.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np

from . import frameworks, kinks, sampling
from .diagnose import typical
from .evaluate import representable, to_float
from .oracle import Oracle, step_scale
from .report import Row, VerifyReport, fmt

RTOL, ATOL = 1e-9, 1e-12                  # emitted float64 against the 50-digit truth
FD_RTOL, FD_ATOL = 2e-5, 1e-6             # against float64 central differences
FD_STEP = 1e-6
HESSIAN_ROWS = 24                         # rows of a per-sample loss whose blocks the oracle computes


def _compiled(source, *, name=None, wrt=None, params=None, reduction="mean"):
    from ..compiler import CompiledLoss, compile as compile_loss

    if isinstance(source, CompiledLoss) or (hasattr(source, "build") and hasattr(source, "derivation")):
        return source   # a compiled loss (or anything that builds modules like one)
    if isinstance(source, os.PathLike):
        source = open(source, encoding="utf-8").read()
    return compile_loss(source, name=name, wrt=wrt, reduction=reduction, params=params)


def _errors(got, true, ok_mask=None, rtol=RTOL, atol=ATOL, scale=None):
    """(points compared, max abs error, max rel error, failed points, failed at kinks only?)"""
    got = np.asarray(got, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if got.shape != true.shape:
        if got.size == true.size:
            got = got.reshape(true.shape)
        else:
            raise ValueError(f"shape {got.shape}, expected {true.shape}")
    mask = np.isfinite(true) if ok_mask is None else (np.broadcast_to(ok_mask, true.shape) & np.isfinite(true))
    if scale is None:   # the size of what is compared, from both sides (differences of 0 are noise)
        scale = max(typical(true[mask]), typical(got[mask & np.isfinite(got)]))
    with np.errstate(all="ignore"):
        err = np.abs(got - true)
        rel = err / np.maximum(np.abs(true), 1e-300)
        bad = mask & ~(err <= rtol * np.abs(true) + atol * scale)
    return (int(mask.sum()), float(np.max(err[mask], initial=0)), float(np.max(np.where(err[mask] == 0, 0,
            rel[mask]), initial=0)), bad)


class _Table:
    def __init__(self, inputs: Mapping[str, np.ndarray] | None = None):
        self.rows: list[Row] = []
        self.inputs = inputs or {}

    def _where(self, index: tuple, got, true) -> str:
        """The inputs at the worst point, when the result is shaped like them (or has their rows)."""
        parts = []
        for name, x in (self.inputs.items() if index else ()):
            x = np.asarray(x)
            if x.shape == np.shape(true):
                parts.append(f"{name}={fmt(x[index])}")
            elif x.ndim and x.shape[0] == np.shape(true)[0]:
                parts.append(f"{name}={fmt(x[index[0]].tolist())}")    # the sample's row
        return (f"worst at {', '.join(parts)}: " if parts else "worst: ") + f"got {fmt(got[index])}, " \
            f"expected {fmt(true[index])}"

    def add(self, backend, quantity, reference, got, true, ok_mask=None, kink=None, allow_kinks=False,
            rtol=RTOL, atol=ATOL, note=""):
        try:
            n, e_abs, e_rel, bad = _errors(got, true, ok_mask, rtol, atol)
        except Exception as error:  # noqa: BLE001 - a wrong shape or a crash is a failure of this row
            self.rows.append(Row(backend, quantity, reference, 0, float("nan"), float("nan"), "FAIL",
                                 f"{type(error).__name__}: {error}"))
            return
        status = "ok"
        if bad.any():
            at_kinks = kink is not None and not (bad & ~np.broadcast_to(kink, bad.shape)).any()
            if allow_kinks and at_kinks:
                status = "ok (kinks)"
                note = note or f"{int(bad.sum())} kink point(s) follow another subgradient"
            else:
                status = "FAIL"
                g = np.asarray(got, np.float64).reshape(np.shape(true))
                tr = np.asarray(true, np.float64)
                with np.errstate(all="ignore"):
                    score = np.where(bad, np.nan_to_num(np.abs(g - tr), nan=np.inf) / (np.abs(tr) + 1e-300), -1)
                index = np.unravel_index(int(np.argmax(score)), tr.shape) if tr.ndim else ()
                note = note or f"{int(bad.sum())} point(s) off; {self._where(index, g, tr)}"
        self.rows.append(Row(backend, quantity, reference, n, e_abs, e_rel, status, note))

    def fail(self, backend, quantity, reference, message):
        self.rows.append(Row(backend, quantity, reference, 0, float("nan"), float("nan"), "FAIL", message))

    def skip(self, backend, quantity, reference, message):
        self.rows.append(Row(backend, quantity, reference, 0, float("nan"), float("nan"), "skipped", message))


def _available(name: str) -> bool:
    import importlib.util

    return name == "numpy" or importlib.util.find_spec(name) is not None


def verify(source, *, backends: Sequence[str] | None = None, name: str | None = None, wrt=None,
           params: Mapping[str, float] | None = None, reduction: str = "mean", points: int = 600,
           seed: int = 0) -> VerifyReport:
    """Verify the emitted NumPy, PyTorch and TensorFlow code of `source` (text, catalog name, CompiledLoss)
    on about `points` elements (at most `sampling.MAX_VERIFY_POINTS`, 10^5)."""
    points, seed = sampling.sample_options(points, seed, sampling.MAX_VERIFY_POINTS, "verify")
    loss = _compiled(source, name=name, wrt=wrt, params=params, reduction=reduction)
    reduction = loss.reduction
    backends = [frameworks.framework_name(b) for b in (backends or frameworks.FRAMEWORKS)]
    if sampling.unit_of(loss) == "batch":   # every value depends on every entry: differences cost n^2
        points = min(points, 96)
    sample = sampling.sample(loss, points, seed, edge_limit=max(points // 2, 48))
    inputs = sample.inputs()
    targets = tuple(loss.targets)
    table = _Table(inputs)
    notes: list[str] = []
    oracle = Oracle(loss)
    kink = kinks.at_kinks(loss, inputs)
    near = kinks.at_kinks(loss, inputs, rtol=100 * FD_STEP)
    # a per-sample loss is referenced by 50-digit differences: not across a kink
    truth = _Truth(loss, oracle, inputs, reduction, skip=None if oracle.elementwise else kinks.at_kinks(
        loss, inputs, rtol=1e-8))
    truth.symbolic_rows(table, kink)
    for backend in backends:
        if not _available(backend):
            table.skip(backend, "everything", "-", f"{backend} is not installed")
            continue
        try:
            module = loss.build(backend)
        except Exception as error:  # noqa: BLE001 - the emitter failed: that is the finding
            table.fail(backend, "build", "-", f"{type(error).__name__}: {error}")
            continue
        # float64 differences only where a step resolves the function: the random points (the
        # edges, 1e-300 or 1 - 2^-52, are the 50-digit reference's job)
        bulk = sample.origin == 0
        near = near | ~_unit_mask(bulk, np.shape(kink), sample.unit)
        _Backend(backend, module, loss, truth, inputs, kink, near, table, seed).run()
    counts = np.bincount(sample.origin, minlength=3)
    unit = {"element": "elements", "sample": "samples", "batch": "samples"}[sample.unit]
    info = {"units": sample.size, "unit": sample.unit, "random": int(counts[0]), "edge": int(counts[1]),
            "kink": int(counts[2]),
            "text": f"{sample.size:,} {unit} ({counts[0]:,} random, {counts[1]:,} edge, {counts[2]:,} on kinks)"}
    return VerifyReport(loss.name, targets, reduction, info, table.rows, notes)


def _unit_mask(per_unit: np.ndarray, shape, unit: str) -> np.ndarray:
    """A per-unit mask spread over the elements (context shape)."""
    if unit == "element":
        return per_unit.reshape(shape) if per_unit.size == int(np.prod(shape)) else np.broadcast_to(
            per_unit.reshape(-1)[:1], shape)
    return np.broadcast_to(per_unit.reshape((-1,) + (1,) * (len(shape) - 1)), shape)


class _Truth:
    """The 50-digit values, gradients and Hessians at the sample, as float64 (and where representable)."""

    def __init__(self, loss, oracle: Oracle, inputs, reduction: str, skip: np.ndarray | None = None):
        self.loss = loss
        self.skip_rows = None if skip is None else (skip.reshape(skip.shape[0], -1).any(axis=1) if skip.ndim
                                                    else np.zeros(1, bool))
        self.oracle = oracle
        self.inputs = inputs
        self.targets = tuple(loss.targets)
        values = oracle.values(inputs)
        self.values = to_float(values)
        self.values_ok = representable(values)
        self.n = int(self.values.size)
        self.weight = 1.0 / self.n if reduction == "mean" else 1.0
        self.reduction = reduction
        if reduction == "none":
            self.reduced, self.reduced_ok = self.values, self.values_ok
        else:
            import mpmath

            with mpmath.workdps(oracle.digits):
                total = mpmath.fsum(values.reshape(-1).tolist())
                reduced = total / self.n if reduction == "mean" else total
            self.reduced = to_float(np.array([reduced], dtype=object)).reshape(())
            # a sum of values beyond float64 cannot be formed in float64, even if it is representable
            self.reduced_ok = representable(np.array([reduced], dtype=object)).reshape(()) & self.values_ok.all()
        self.grads = []
        for t in self.targets:
            g = oracle.gradient(inputs, t)
            self.grads.append((to_float(g) * self.weight, self._usable(representable(g))))
        self._hessians: dict = {}

    def hessian(self, i: int, j: int):
        """(d2 L / dt_i dt_j, representable?): the diagonal, or blocks; (j, i) is (i, j) transposed."""
        if (i, j) not in self._hessians and (j, i) in self._hessians and not self.oracle.elementwise:
            h, ok = self._hessians[(j, i)]
            return np.swapaxes(h, -1, -2), np.swapaxes(ok, -1, -2)
        if (i, j) not in self._hessians:
            if self.oracle.elementwise:
                h = self.oracle.hessian(self.inputs, self.targets[i], self.targets[j])
                self._hessians[(i, j)] = (to_float(h) * self.weight, representable(h))
            else:
                self._hessians[(i, j)] = self._blocks(i, j)
        return self._hessians[(i, j)]

    def _blocks(self, i: int, j: int):
        """Blocks by 50-digit differences on a few rows only (4 d^2 evaluations each): the rest unchecked."""
        batch = np.shape(self.values)[0]
        rows = np.unique(np.concatenate([np.arange(min(batch, HESSIAN_ROWS // 2)),
                                         np.linspace(0, batch - 1, HESSIAN_ROWS // 2).astype(int)]))
        part = {k: np.asarray(v)[rows] for k, v in self.inputs.items()}
        h = self.oracle.hessian(part, self.targets[i], self.targets[j])
        width = h.shape[-1]
        full = np.full((batch, width, width), np.nan)
        ok = np.zeros((batch, width, width), bool)
        full[rows] = to_float(h) * self.weight
        ok[rows] = representable(h)
        return full, self._usable(ok)

    def _usable(self, ok: np.ndarray) -> np.ndarray:
        """Representable, and (for differences) not straddling a kink."""
        if self.skip_rows is None or not ok.ndim or ok.shape[0] != self.skip_rows.shape[0]:
            return ok
        return ok & ~self.skip_rows.reshape((-1,) + (1,) * (ok.ndim - 1))

    def symbolic_rows(self, table: _Table, kink) -> None:
        """The symbolic derivatives against 50-digit central differences (elementwise losses)."""
        if not self.oracle.elementwise:
            table.skip("sympy", "gradient", "mpmath differences",
                       "per-sample losses are referenced by differences already")
            return
        d = self.loss.derivation
        usable = ~np.broadcast_to(kink, np.shape(self.values))
        for i, t in enumerate(self.targets):
            fd = self.oracle.differences(self.inputs, t)
            g = self.oracle.gradient(self.inputs, t)
            ok = representable(fd) & representable(g) & usable
            table.add("sympy", f"grad {t}", "mpmath differences of loss", to_float(g), to_float(fd), ok,
                      rtol=1e-12, atol=1e-15)
            for u in self.targets:
                h = self.oracle.hessian(self.inputs, t, u)
                fd2 = self.oracle.expression_differences(d.gradient[i], self.inputs, u)
                ok2 = representable(fd2) & representable(h) & usable
                table.add("sympy", f"hessian {t},{u}" if len(self.targets) > 1 else f"hessian {t}",
                          "mpmath differences of grad", to_float(h), to_float(fd2), ok2, rtol=1e-12, atol=1e-15)


class _Backend:
    """The rows of one backend."""

    def __init__(self, name, module, loss, truth: _Truth, inputs, kink, near, table: _Table, seed: int):
        self.name = name
        self.module = module
        self.loss = loss
        self.truth = truth
        self.inputs = inputs
        self.kink = kink
        self.near = near
        self.table = table
        self.fw = frameworks.Framework(name)
        self.targets = truth.targets
        self.k = len(self.targets)
        self.rng = np.random.default_rng(seed + 7)
        self.domains = {a.name: a.domain for a in loss.definition.arguments}

    def tensors(self, inputs=None, dtype=None):
        inputs = self.inputs if inputs is None else inputs
        out = {}
        for key, value in inputs.items():
            v = np.asarray(value)
            if dtype is not None and np.issubdtype(v.dtype, np.floating):
                v = v.astype(dtype)
            out[key] = self.fw.tensor(v)
        return out

    def call(self, function: str, inputs=None, dtype=None, **extra):
        with frameworks.quiet():
            return self.fw.to_numpy(getattr(self.module, function)(**self.tensors(inputs, dtype), **extra))

    def _kink_of(self, shape):
        k = np.asarray(self.kink)
        if k.shape == tuple(shape):
            return k
        if len(shape) >= 1 and k.ndim >= 1 and shape[0] == k.shape[0]:
            row = k.reshape(k.shape[0], -1).any(axis=1)
            return np.broadcast_to(row.reshape((-1,) + (1,) * (len(shape) - 1)), shape)
        return np.zeros(shape, bool)

    def run(self) -> None:
        t, b = self.truth, self.name
        mp = "mpmath (50 digits)"
        if hasattr(self.module, "values"):
            self.guard("loss per value", mp, lambda: self.table.add(
                b, "loss per value", mp, self.call("values"), t.values, t.values_ok))
        self.guard("loss", mp, lambda: self.table.add(b, "loss", mp, self.call("loss"), t.reduced, t.reduced_ok))
        grads = self.guard("grad", mp, lambda: self._tuple(self.call("grad")))
        if grads is not None:
            for i, target in enumerate(self.targets):
                self.table.add(b, f"grad {target}", mp, grads[i], t.grads[i][0], t.grads[i][1])
            self.guard("value_and_grad", "loss, grad", lambda: self._value_and_grad(grads))
        hessians = self.guard("hessian", mp, lambda: self._hessian_blocks(self.call("hessian")))
        if hessians is not None:
            try:
                for (i, j), h in hessians.items():
                    true, ok = t.hessian(i, j)
                    self.table.add(b, self._hlabel(i, j), mp, h, true, ok)
                self.guard("hvp", "mpmath H v", self._hvp)
            except NotImplementedError as error:
                self.table.skip(b, "hessian", mp, str(error))
        if grads is not None:
            self.guard("grad", "float64 differences", lambda: self._differences(grads))
        if b != "numpy":
            self.guard("grad", "autodiff", lambda: self._autodiff(grads, hessians))
        self.guard("dtype", "float32 in", self._dtype)

    def guard(self, quantity, reference, action: Callable):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - any crash of emitted code is a failed row
            self.table.fail(self.name, quantity, reference, f"{type(error).__name__}: {error}")
            return None

    def _hlabel(self, i, j):
        return f"hessian {self.targets[i]}" if self.k == 1 else f"hessian {self.targets[i]},{self.targets[j]}"

    def _tuple(self, value):
        return tuple(value) if isinstance(value, tuple) else (value,)

    def _hessian_blocks(self, value) -> dict:
        if self.k == 1:
            return {(0, 0): np.asarray(value[0][0] if isinstance(value, tuple) else value)}
        return {(i, j): np.asarray(value[i][j]) for i in range(self.k) for j in range(self.k)}

    def _value_and_grad(self, grads):
        value, g = self.call("value_and_grad")
        g = self._tuple(g)
        loss = self.call("loss")
        self.table.add(self.name, "value_and_grad", "loss, grad", value, loss, rtol=1e-12, atol=0)
        for i, target in enumerate(self.targets):
            self.table.add(self.name, f"value_and_grad {target}", "loss, grad", g[i], grads[i], rtol=1e-12, atol=0)

    def _hvp(self):
        vs = tuple(self.rng.normal(size=np.shape(self.inputs[t])) for t in self.targets)
        v_arg = vs[0] if self.k == 1 else tuple(self.fw.tensor(v) for v in vs)
        with frameworks.quiet():
            raw = self.module.hvp(**self.tensors(), v=v_arg if self.k > 1 else self.fw.tensor(vs[0]))
        with frameworks.quiet():
            self._hvp_rows(raw, vs)

    def _hvp_rows(self, raw, vs):
        got = self._tuple(self.fw.to_numpy(raw))
        for i, target in enumerate(self.targets):
            expected = np.zeros(np.shape(self.inputs[target]))
            ok = np.ones(np.shape(expected), bool)
            for j in range(self.k):
                h, h_ok = self.truth.hessian(i, j)
                if h.ndim == expected.ndim + 1:   # blocks (batch, d, d) times v (batch, d)
                    expected = expected + np.einsum("bij,bj->bi", np.nan_to_num(h), vs[j])
                    ok &= h_ok.reshape(h.shape[0], -1).all(axis=1)[:, None]
                else:
                    expected = expected + np.nan_to_num(h) * vs[j]
                    ok &= h_ok
            self.table.add(self.name, f"hvp {target}", "mpmath H v", got[i], expected, ok)

    def _elements_at(self, inputs):
        return np.asarray(self.call("values", inputs), np.float64)

    def _differences(self, grads):
        """Emitted grad (and hessian) against float64 central differences of the emitted loss (grad)."""
        if not hasattr(self.module, "values"):
            self.table.skip(self.name, "grad", "float64 differences", "the module has no values")
            return
        elementwise = self.truth.oracle.elementwise
        if not elementwise and any(r.axis == "all" for r in self.truth.oracle.model.reductions.values()):
            self.table.skip(self.name, "grad", "float64 differences", "a whole-batch reduction: skipped")
            return
        for i, target in enumerate(self.targets):
            x = np.asarray(self.inputs[target], np.float64)
            domain = self.domains[target]
            # a step that stays inside the domain and above float64 spacing: 1e-6 of the distance to
            # the domain's edge for probabilities and positive values, else 1e-6 (1e-11 |x| if larger)
            distance = step_scale(x, domain)
            h = FD_STEP * distance if domain != "real" else np.maximum(FD_STEP, 1e-11 * np.abs(x))
            h = np.maximum(h, 1e4 * np.spacing(x))
            resolvable = (distance >= 1e-3) | (domain == "real")   # near the edge: the mpmath rows' job
            fd = np.zeros_like(x)
            masks = [np.ones(x.shape, bool)] if elementwise else [
                np.eye(x.shape[1], dtype=bool)[j][None, :].repeat(x.shape[0], 0) for j in range(x.shape[1])]
            for mask in masks:
                plus = dict(self.inputs, **{target: np.where(mask, x + h, x)})
                minus = dict(self.inputs, **{target: np.where(mask, x - h, x)})
                with np.errstate(all="ignore"):
                    delta = self._elements_at(plus) - self._elements_at(minus)
                if not elementwise:
                    delta = np.broadcast_to(delta.reshape(delta.shape[0], -1).sum(axis=1)[:, None], x.shape)
                with np.errstate(all="ignore"):
                    fd = np.where(mask, np.broadcast_to(delta, x.shape) / (2 * h), fd)
            ok = ~self._kink_of(x.shape) & ~self._near(x.shape) & np.isfinite(fd) & resolvable
            self.table.add(self.name, f"grad {target}", "float64 differences of loss", grads[i],
                           fd * self.truth.weight, ok, rtol=FD_RTOL, atol=FD_ATOL)
            self._hessian_differences(i, target, x, h, masks, elementwise, resolvable)

    def _hessian_differences(self, i, target, x, h, masks, elementwise, resolvable):
        """d grad_j / d target by float64 differences of the emitted grad: the Hessian's column i."""
        hessians = self._hessian_blocks(self.call("hessian"))
        for j in range(len(self.targets)):
            cols = []
            for mask in masks:
                plus = dict(self.inputs, **{target: np.where(mask, x + h, x)})
                minus = dict(self.inputs, **{target: np.where(mask, x - h, x)})
                gp = np.asarray(self._tuple(self.call("grad", plus))[j], np.float64)
                gm = np.asarray(self._tuple(self.call("grad", minus))[j], np.float64)
                step = 2 * h if elementwise else 2 * h[mask].reshape(x.shape[0], 1)
                with np.errstate(all="ignore"):
                    cols.append((gp - gm) / step)
            fd = cols[0] if elementwise else np.stack(cols, axis=2)  # blocks [b, j-entry, i-entry]
            ok = np.isfinite(fd) & ~self._near(np.shape(fd)) & ~self._kink_of(np.shape(fd))
            ok &= resolvable if elementwise else resolvable[:, None, :]
            self.table.add(self.name, self._hlabel(j, i), "float64 differences of grad", hessians[(j, i)], fd, ok,
                           rtol=FD_RTOL, atol=FD_ATOL)

    def _near(self, shape):
        k = np.asarray(self.near)
        if k.shape == tuple(shape):
            return k
        return self._kink_of(shape) if k.shape == np.asarray(self.kink).shape else np.zeros(shape, bool)

    def _autodiff(self, grads, hessians):
        fw = self.fw
        label = {"torch": "torch.autograd", "tensorflow": "tf.GradientTape"}[self.name]

        def loss_of(tensors):
            out = self.module.loss(**tensors)
            return out

        auto, _ = fw.gradients(loss_of, self.inputs, self.targets)
        for i, target in enumerate(self.targets):
            if auto[i] is None:
                self.table.fail(self.name, f"grad {target}", label, "the loss does not depend on it")
                continue
            kink = self._kink_of(np.shape(auto[i]))
            self.table.add(self.name, f"grad {target}", label, grads[i] if grads is not None else auto[i],
                           auto[i], kink=kink, allow_kinks=True)
        if hessians is None:
            return
        if any(r.axis == "all" for r in self.truth.oracle.model.reductions.values()):
            self.table.skip(self.name, "hessian", label, "a whole-batch reduction: the Hessian is one dense block")
            return
        second = self._autodiff_hessian()
        for (i, j), h in second.items():
            kink = self._kink_of(np.shape(h))
            self.table.add(self.name, self._hlabel(i, j), label + " (twice)", hessians[(i, j)], h, kink=kink,
                           allow_kinks=True)

    def _autodiff_hessian(self) -> dict:
        """Second derivatives of the emitted loss by autodiff: the diagonal, or blocks row by row."""
        elementwise = self.truth.oracle.elementwise
        out = {}
        if self.name == "torch":
            torch = self.fw.lib
            tensors = {k: self.fw.tensor(v, watch=k in self.targets) for k, v in self.inputs.items()}
            first = torch.autograd.grad(self.module.loss(**tensors), [tensors[t] for t in self.targets],
                                        create_graph=True)
            for i in range(self.k):
                gi = first[i]
                for j, u in enumerate(self.targets):
                    x = tensors[u]
                    if not gi.requires_grad:   # a piecewise-linear loss: its gradient is constant
                        out[(i, j)] = np.zeros(tuple(x.shape) if elementwise else tuple(x.shape) + (x.shape[-1],))
                    elif elementwise:
                        h = torch.autograd.grad(gi.sum(), x, retain_graph=True, allow_unused=True)[0]
                        out[(i, j)] = np.zeros(x.shape) if h is None else h.detach().numpy()
                    else:
                        cols = []
                        for c in range(gi.shape[1]):
                            h = torch.autograd.grad(gi[:, c].sum(), x, retain_graph=True, allow_unused=True)[0]
                            cols.append(np.zeros(tuple(x.shape)) if h is None else h.detach().numpy())
                        out[(i, j)] = np.stack(cols, axis=1)
            return out
        tf = self.fw.lib
        tensors = {k: self.fw.tensor(v) for k, v in self.inputs.items()}
        for i in range(self.k):
            for j, u in enumerate(self.targets):
                with tf.GradientTape(persistent=True) as outer:
                    outer.watch(tensors[u])
                    with tf.GradientTape() as inner:
                        inner.watch(tensors[self.targets[i]])
                        value = self.module.loss(**tensors)
                    gi = inner.gradient(value, tensors[self.targets[i]])
                    parts = [tf.reduce_sum(gi)] if elementwise else [tf.reduce_sum(gi[:, c]) for c in
                                                                    range(gi.shape[1])]
                cols = []
                for part in parts:
                    h = outer.gradient(part, tensors[u])
                    cols.append(np.zeros(tuple(tensors[u].shape)) if h is None else tf.convert_to_tensor(h).numpy())
                out[(i, j)] = cols[0] if elementwise else np.stack(cols, axis=1)
                del outer
        return out

    def _dtype(self):
        results = {"loss": self.call("loss", dtype=np.float32), "grad": self.call("grad", dtype=np.float32),
                   "hessian": self.call("hessian", dtype=np.float32)}
        wrong = []
        for key, value in results.items():
            flat = value
            while isinstance(flat, tuple):
                flat = flat[0]
            if np.asarray(flat).dtype != np.float32:
                wrong.append(f"{key} gives {np.asarray(flat).dtype}")
        status = "FAIL" if wrong else "ok"
        self.table.rows.append(Row(self.name, "dtype", "float32 in", 3, 0.0, 0.0, status,
                                   "; ".join(wrong) if wrong else "float32 out"))

