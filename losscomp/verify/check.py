"""`losscomp.check`: is a hand-written loss, gradient or Hessian the one a formula defines?

The reference is the formula compiled with `reduction="none"` and emitted for NumPy: the value of
every element (or sample) and d(sum of the values)/d target. `losscomp verify` holds that module to a
50-digit evaluation of the SymPy expressions, so here it is trusted and fast (10^6 points in a blink).

What the function returns decides what it is compared with:
  loss     a scalar          the mean of the values (`reduction="sum"`: their sum); then each unit
                             (element, or sample) on its own, one call per point, to say where it
                             differs; and for PyTorch and TensorFlow, autodiff of the scalar against
                             the symbolic gradient on every point
           the values' shape the values themselves (a Keras loss before its reduction), and autodiff
           (batch,)          of an elementwise loss: the mean over each sample (Keras's convention)
           another shape     a reduction over the wrong axis, if it matches one (wrong_axis)
  grad     target-shaped     the gradient of the mean (or sum), one array per target
  hessian                    elementwise: the diagonal, target-shaped; per sample: blocks (batch, d, d)
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import frameworks, kinks, regions, sampling
from .diagnose import Context, Evidence, Tolerance, judge, name_factor
from .evaluate import to_float
from .oracle import Oracle
from .report import CheckInputError, Comparison, Diagnosis, Report

KINDS = ("loss", "grad", "hessian")
TOLERANCES = {"float64": Tolerance(1e-6, 1e-9), "float32": Tolerance(2e-4, 2e-6),
              "float16": Tolerance(2e-2, 2e-3)}
PROBES = 320          # one-unit calls for a function that returns a scalar


# -- the reference --------------------------------------------------------------------------------

def compile_against(against, *, name=None, wrt=None, params=None):
    """`against` (catalog name, loss-language text, a .loss file, or a CompiledLoss) with reduction none."""
    from ..compiler import CompiledLoss, compile as compile_loss

    if isinstance(against, CompiledLoss):
        loss = against
        if wrt is not None or params:
            raise CheckInputError("wrt= and params= apply to source text; compile the loss with them instead")
        return dataclasses.replace(loss, reduction="none")
    if isinstance(against, os.PathLike) or (isinstance(against, str) and against.endswith(".loss")
                                             and "\n" not in against and Path(against).is_file()):
        against = Path(against).read_text(encoding="utf-8")
    if not isinstance(against, str):
        raise CheckInputError(f"against= must be loss-language text, a catalog name or a .loss file, "
                              f"not {type(against).__name__}")
    return compile_loss(against, name=name, wrt=wrt, reduction="none", params=params)


class Reference:
    """The compiled formula's values and derivatives (reduction none) at any inputs, in float64.

    `recompile(argument)` gives the same formula differentiated by another argument (used to say
    that a gradient was taken by the wrong one)."""

    def __init__(self, loss, recompile: Callable[[str], Any] | None = None):
        self.loss = loss
        self.module = loss.build("numpy")
        self.targets = tuple(loss.targets)
        self.recompile = recompile
        self._others: dict[str, Any] = {}

    def values(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        with frameworks.quiet():
            return np.asarray(self.module.loss(**inputs), dtype=np.float64)

    def grad(self, inputs) -> tuple[np.ndarray, ...]:
        with frameworks.quiet():
            g = self.module.grad(**inputs)
        return tuple(np.asarray(x, np.float64) for x in (g if isinstance(g, tuple) else (g,)))

    def hessian(self, inputs) -> tuple[tuple[np.ndarray, ...], ...]:
        with frameworks.quiet():
            h = self.module.hessian(**inputs)
        if len(self.targets) == 1:
            return ((np.asarray(h, np.float64),),)
        return tuple(tuple(np.asarray(x, np.float64) for x in row) for row in h)

    def grad_by(self, argument: str, inputs) -> np.ndarray:
        """d(sum of values)/d `argument`, any argument (for naming a gradient taken by the wrong one)."""
        if self.recompile is None:
            raise LookupError("no source to differentiate by another argument")
        if argument not in self._others:
            self._others[argument] = self.recompile(argument).build("numpy")
        with frameworks.quiet():
            return np.asarray(self._others[argument].grad(**inputs), np.float64)


# -- the function under test ----------------------------------------------------------------------

class Subject:
    """The user's function with its framework and binding: arrays in, float64 arrays out."""

    def __init__(self, fn, framework: frameworks.Framework, binding: frameworks.Binding):
        self.fn = fn
        self.fw = framework
        self.binding = binding

    def __call__(self, inputs: Mapping[str, np.ndarray], swap=None):
        with self.fw.precision():
            tensors = {k: self.fw.tensor(v) for k, v in inputs.items()}
            try:
                with frameworks.quiet():
                    out = self.binding.call(tensors, swap)
            except CheckInputError:
                raise
            except Exception as error:  # noqa: BLE001 - the user's code failed: a CheckInputError says so
                raise self._failure(error, inputs) from error
            return self.fw.to_numpy(out)

    def gradients(self, inputs, targets, swap=None):
        with self.fw.precision():
            try:
                with frameworks.quiet():
                    grads, out = self.fw.gradients(lambda t: self.binding.call(t, swap), inputs, targets)
            except CheckInputError:
                raise
            except Exception as error:  # noqa: BLE001
                raise self._failure(error, inputs) from error
            return grads, self.fw.to_numpy(out)

    def _failure(self, error: Exception, inputs) -> CheckInputError:
        shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in inputs.items())
        return CheckInputError(f"calling {self.binding.text()} with {shapes} raised {type(error).__name__}: {error}")


def _dtype_of(value) -> str:
    arrays = value if isinstance(value, tuple) else (value,)
    for a in arrays:
        if isinstance(a, tuple):
            return _dtype_of(a)
        kind = np.asarray(a).dtype
        if np.issubdtype(kind, np.floating):
            return kind.name
    return "float64"


# -- check ----------------------------------------------------------------------------------------

def check(fn: Callable, against, kind: str = "loss", framework: str | None = None,
          wrt: str | Sequence[str] | None = None, *, name: str | None = None,
          params: Mapping[str, float] | None = None, reduction: str = "mean", points: int = 20_000,
          seed: int = 0, rtol: float | None = None, atol: float | None = None,
          arguments: Mapping[str, str] | None = None) -> Report:
    """Check `fn` against the formula `against`; see the module docstring for what is compared.

    kind: 'loss', 'grad' or 'hessian'. framework: detected from `fn` when None. wrt: the target(s)
    of the formula (default: its own). params: the formula's parameters (also passed to `fn` by name
    when it has parameters of the same names). reduction: what a scalar loss (and the gradient) is
    expected to be of: 'mean' (default) or 'sum'. points: about how many elements to sample, at most
    `sampling.MAX_CHECK_POINTS` (10^6).
    arguments: formula argument (or parameter) -> fn's parameter name, e.g. {"y_pred": "input",
    "y": "target"}. Without it, arguments go by equal names, then by the frameworks' names (the
    formula's prediction to `input` / `y_pred` / `logits`..., its truth to `target` / `y_true` /
    `labels`...), then by position: PyTorch's order (prediction, target) for an nn.Module, Keras'
    (y_true, y_pred) for a Keras Loss, else the formula's.
    """
    points, seed = sampling.sample_options(points, seed, sampling.MAX_CHECK_POINTS, "check")
    if kind not in KINDS:
        raise CheckInputError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if reduction not in ("mean", "sum", "none"):
        raise CheckInputError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    if isinstance(fn, type):
        raise CheckInputError(f"{fn.__name__} is a class; pass an instance, e.g. {fn.__name__}()")
    if not callable(fn):
        raise CheckInputError(f"the function to check is a {type(fn).__name__}, not a callable")
    loss = compile_against(against, name=name, wrt=wrt, params=params)
    reference = Reference(loss, lambda argument: compile_against(against, name=name, wrt=argument,
                                                                 params=params))
    sample = sampling.sample(loss, points, seed)
    names = tuple(a.name for a in loss.definition.arguments)
    parameters = {p.name: float(p.default) for p in loss.definition.parameters}
    binding = frameworks.Binding(fn, names, parameters, mapping=arguments, prediction=_prediction(loss))

    def probe(fw_name: str):
        small = sample.take(np.arange(min(sample.size, 8)))
        return Subject(fn, frameworks.Framework(fw_name), binding)(small.inputs())

    fw = frameworks.Framework(framework) if framework else frameworks.Framework(frameworks.detect(fn, probe))
    subject = Subject(fn, fw, binding)
    first, sample, notes = _first_call(subject, sample, kind, fn)
    tolerance = TOLERANCES.get(_dtype_of(first), TOLERANCES["float64"])
    if _dtype_of(first) != "float64":
        notes.append(f"the function computes in {_dtype_of(first)}; tolerances are set for it")
    tolerance = Tolerance(rtol if rtol is not None else tolerance.rtol, atol if atol is not None else tolerance.atol)
    run = _Run(loss, reference, sample, subject, kind, reduction, tolerance, first)
    comparisons = run.comparisons()
    if binding.note():
        notes.insert(0, binding.note())
    return Report(function=frameworks.describe(fn), against=_against_text(against, loss), kind=kind,
                  framework=fw.name, call=binding.text(), targets=tuple(loss.targets),
                  sample=_sample_info(sample), comparisons=comparisons, tolerance=tolerance.to_dict(),
                  notes=notes + run.notes)


def _prediction(loss) -> str | None:
    """The formula's prediction: its default target (the `wrt` clause, else the second argument)."""
    definition = loss.definition
    if definition.wrt:
        return definition.wrt[0]
    return definition.arguments[1].name if len(definition.arguments) > 1 else None


def _against_text(against, loss) -> str:
    if isinstance(against, str) and against.strip().isidentifier():
        return against.strip()
    return loss.name


def _sample_info(sample: sampling.Sample) -> dict:
    counts = np.bincount(sample.origin, minlength=3)
    shapes = {k: list(v.shape) for k, v in sample.inputs().items()}
    unit = {"element": "elements", "sample": "samples", "batch": "samples"}[sample.unit]
    text = (f"{sample.size:,} {unit} ({counts[0]:,} random, {counts[1]:,} edge, {counts[2]:,} on kinks), "
            f"shapes {', '.join(f'{k} {tuple(v)}' for k, v in shapes.items())}")
    return {"unit": sample.unit, "units": sample.size, "random": int(counts[0]), "edge": int(counts[1]),
            "kink": int(counts[2]), "shapes": shapes, "text": text}


def _first_call(subject: Subject, sample: sampling.Sample, kind: str, fn):
    """Call once on the whole sample; fall back to 1-D arrays for an elementwise loss."""
    notes: list[str] = []
    try:
        return subject(sample.inputs()), sample, notes
    except CheckInputError as error:
        first_error = error
    if sample.unit == "element":
        flat = dataclasses.replace(sample, flat=True)
        try:
            out = subject(flat.inputs())
            notes.append("the function rejects 2-D inputs; it was called with 1-D arrays")
            return out, flat, notes
        except CheckInputError:
            pass
    raise first_error


class _Run:
    """One check: the comparisons for `kind`, sharing the sample and its features."""

    def __init__(self, loss, reference: Reference, sample: sampling.Sample, subject: Subject, kind: str,
                 reduction: str, tolerance: Tolerance, first):
        self.loss = loss
        self.reference = reference
        self.sample = sample
        self.subject = subject
        self.kind = kind
        self.reduction = reduction
        self.first = first
        self.notes: list[str] = []
        self.targets = tuple(loss.targets)
        self.inputs = sample.inputs()
        self.values = reference.values(self.inputs)
        self.oracle = Oracle(loss)
        self.n_values = int(self.values.size)
        self.weight = 1.0 / self.n_values if reduction == "mean" else 1.0
        self.kink_units = self._kink_units()
        arguments = tuple(a.name for a in loss.definition.arguments)
        shapes = {k: np.shape(v) for k, v in self.inputs.items()}
        swappable = tuple((a, b) for a, b in itertools.combinations(arguments, 2)
                          if shapes[a] == shapes[b] and sample.domains[a] != "index")
        batch = next(iter(shapes.values()))[0] if next(iter(shapes.values())) else 1
        counts = {"N": self.n_values, "B": int(batch), "D": int(sample.width)}
        if sample.flat or sample.unit == "batch":
            counts = {"N": self.n_values}
        self.ctx = Context(tolerance, self._table(), sample.columns, sample.origin, arguments, self.targets,
                           counts, swappable)

    # -- shared pieces -------------------------------------------------------------------------------
    def _kink_units(self) -> np.ndarray:
        try:
            mask = kinks.at_kinks(self.loss, self.inputs)
        except Exception:  # noqa: BLE001 - no kink information: every difference counts
            return np.zeros(self.sample.size, dtype=bool)
        if self.sample.unit == "element":
            return mask.reshape(-1)
        return mask.reshape(mask.shape[0], -1).any(axis=1) if mask.ndim else np.zeros(self.sample.size, bool)

    def _table(self) -> regions.FeatureTable | None:
        if self.sample.unit != "element":
            return None
        from .evaluate import Model

        model = Model(self.loss.definition, self.sample.parameters)
        columns = {k: np.asarray(v) for k, v in self.sample.columns.items()}
        table = []
        with frameworks.quiet():
            for feature in kinks.features(self.loss):
                try:
                    values = np.broadcast_to(np.asarray(model.evaluate(feature.expr, columns), float),
                                             (self.sample.size,))
                except Exception:  # noqa: BLE001 - a feature we cannot evaluate is not offered
                    continue
                if np.isfinite(values).all():
                    table.append((feature, np.array(values)))
        cells = []
        discrete = [a for a in self.loss.definition.arguments if a.domain in kinks.DISCRETE]
        if discrete and len(discrete) <= 2:
            levels = [(a.name, np.unique(self.sample.columns[a.name])) for a in discrete]
            for combo in itertools.product(*[[(n, v) for v in vals] for n, vals in levels]):
                mask = np.ones(self.sample.size, dtype=bool)
                for n, v in combo:
                    mask &= self.sample.columns[n] == v
                text = " and ".join(f"{n} == {v:g}" for n, v in combo)
                cells.append((text, mask))
        return regions.FeatureTable(table, cells)

    def units_of(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """The unit of each position of a result shaped `shape` (flattened), if it maps to units."""
        size = int(np.prod(shape)) if shape else 1
        if self.sample.unit == "element" and size == self.sample.size:
            return np.arange(size)
        if self.sample.unit == "sample" and shape and shape[0] == self.sample.size:
            return np.repeat(np.arange(self.sample.size), size // self.sample.size)
        return None

    def truth(self, what: str, index: tuple = (), weight: float = 1.0):
        """(columns of K units) -> the 50-digit values (what='values'), gradient or Hessian there."""
        def at(columns):
            inputs = self.sample.inputs(columns)
            k = len(next(iter(columns.values())))
            if what == "values":
                v = self.oracle.values(inputs)
            elif what == "grad":
                v = self.oracle.gradient(inputs, self.targets[index[0]])
            else:
                v = self.oracle.hessian(inputs, self.targets[index[0]], self.targets[index[-1]])
            return weight * to_float(v).reshape(k, -1)
        return at

    def evidence(self, name, got, ref, *, evaluate=None, swapped=None, target=None, alternatives=None,
                 units="auto", notes=(), truth=None) -> Evidence:
        got = np.asarray(got, np.float64)
        ref = np.asarray(ref, np.float64)
        if isinstance(units, str):
            units = self.units_of(ref.shape)
        kink = self.kink_units[units] if units is not None else np.zeros(ref.size, bool)
        excluded = ~np.isfinite(ref.reshape(-1))
        notes = list(notes)
        if excluded.any():
            notes.append(f"{int(excluded.sum()):,} point(s) where the expected value overflows float64 are not compared")
        return Evidence(name, got.reshape(-1), ref.reshape(-1), kink, excluded, units, evaluate_units=evaluate,
                        evaluate_swapped=swapped, target=target, alternatives=alternatives, truth=truth, notes=notes)

    def substitute(self, columns: dict) -> tuple[dict, np.ndarray]:
        """The whole sample with its first K units replaced by `columns` (so N stays N)."""
        k = len(next(iter(columns.values())))
        hosts = np.arange(k)
        replaced = self.sample.replaced(hosts, columns)
        return self.sample.inputs(replaced), hosts

    def at_hosts(self, array: np.ndarray, hosts: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        if self.sample.unit == "element":
            return array.reshape(-1)[hosts]
        return array[hosts]

    # -- comparisons ---------------------------------------------------------------------------------
    def comparisons(self) -> list[Comparison]:
        if self.kind == "grad":
            return self._derivatives("grad")
        if self.kind == "hessian":
            return self._derivatives("hessian")
        return self._loss()

    def _expected_derivative(self, what: str, inputs) -> list[tuple[str, np.ndarray, tuple]]:
        """(label, expected array, (i, j)) for each output the function must return."""
        if what == "grad":
            return [(f"grad {t}", self.weight * g, (i,)) for i, (t, g) in enumerate(zip(self.targets,
                                                                                       self.reference.grad(inputs)))]
        h = self.reference.hessian(inputs)
        k = len(self.targets)
        if k == 1:
            return [(f"hessian {self.targets[0]}", self.weight * h[0][0], (0, 0))]
        return [(f"hessian {self.targets[i]},{self.targets[j]}", self.weight * h[i][j], (i, j))
                for i in range(k) for j in range(k)]

    @staticmethod
    def _pick(result, index: tuple, k: int):
        """Entry `index` of a result: with one target the array itself (a 1-tuple or a 1 x 1 nest is
        unwrapped), else result[i] (gradients) or result[i][j] (Hessian blocks); None if absent."""
        if k == 1:
            while isinstance(result, tuple) and len(result) == 1:
                result = result[0]
            return None if isinstance(result, tuple) else result
        try:
            for i in index:
                result = result[i]
            return result
        except (IndexError, TypeError, KeyError):
            return None

    def _derivatives(self, what: str) -> list[Comparison]:
        expected = self._expected_derivative(what, self.inputs)
        k = len(self.targets)
        if k > 1 and not isinstance(self.first, tuple):
            raise CheckInputError(f"the function returns one array; the formula has {k} targets "
                                  f"({', '.join(self.targets)}): return a tuple, one {what} per target")
        out = []
        for label, ref, index in expected:
            got = self._pick(self.first, index, k)
            if got is None:
                raise CheckInputError(f"the function's result has no entry for {label}")
            got = np.asarray(got, np.float64)

            def evaluate(columns, index=index, what=what):
                inputs, hosts = self.substitute(columns)
                g = self._pick(self.subject(inputs), index, k)
                r = dict((i, e) for _, e, i in self._expected_derivative(what, inputs))[index]
                return self.at_hosts(g, hosts), self.at_hosts(r, hosts)

            def swapped(pair, index=index):
                return np.asarray(self._pick(self.subject(self.inputs, swap=pair), index, k), np.float64)

            target = self.targets[index[0]]
            alternatives = None
            if what == "grad":
                def alternatives(target=target):
                    return {a.name: self.weight * self.reference.grad_by(a.name, self.inputs)
                            for a in self.loss.definition.arguments
                            if a.name != target and a.domain in kinks.CONTINUOUS}
            truth = self.truth("grad" if what == "grad" else "hessian", index, self.weight)
            out.append(self._compare_shaped(label, got, ref, evaluate, swapped, target, alternatives, truth))
        return out

    def _compare_shaped(self, label, got, ref, evaluate, swapped, target, alternatives, truth) -> Comparison:
        if got.shape != ref.shape and got.size == ref.size:
            got = got.reshape(ref.shape)
        if got.shape == ref.shape:
            return judge(self.evidence(label, got, ref, evaluate=evaluate, swapped=swapped, target=target,
                                       alternatives=alternatives, truth=truth), self.ctx)
        return self._wrong_shape(label, got, ref, expected_text=f"shape {ref.shape}")

    def _wrong_shape(self, label, got, ref, expected_text, op="mean") -> Comparison:
        """A result of another shape: a reduction of the expected array over some axes, or nothing."""
        squeezed = tuple(n for n in got.shape if n != 1)
        for axes in _axis_subsets(ref.ndim):
            reduced = ref.sum(axis=axes) if op == "sum" else ref.mean(axis=axes)
            if tuple(n for n in reduced.shape if n != 1) != squeezed:
                continue
            comparison = judge(self.evidence(label, got.reshape(reduced.shape), reduced, units=None), self.ctx)
            comparison.verdict = "differs"
            other = ref.sum(axis=axes) if op != "sum" else ref.mean(axis=axes)
            how = op
            if np.allclose(got.reshape(reduced.shape), other, rtol=1e-6, atol=0, equal_nan=True):
                how = "sum" if op != "sum" else "mean"
            # the axis explains the shape; a factor that comes with it is not a second finding
            comparison.diagnosis = [d for d in comparison.diagnosis if d.code != "scale_factor"]
            comparison.diagnosis.insert(0, Diagnosis(
                "wrong_axis", {"axes": list(axes), "shape": list(got.shape), "expected": expected_text,
                               "matches": f"{how} over axis {', '.join(map(str, axes))}"},
                f"returns shape {tuple(got.shape)}: the {how} over axis {', '.join(map(str, axes))}"
                f"{' (the batch axis)' if 0 in axes else ''}, where {expected_text} is expected", label))
            return comparison
        comparison = Comparison(label, "differs", int(got.size))
        comparison.notes.append(f"returns shape {tuple(got.shape)}; expected {expected_text}")
        return comparison

    # -- the loss ------------------------------------------------------------------------------------
    def _loss(self) -> list[Comparison]:
        first = self.first
        if isinstance(first, tuple):
            raise CheckInputError("a loss must return one array, not a tuple")
        got = np.asarray(first, np.float64)
        values = self.values
        op = "sum" if self.reduction == "sum" else "mean"
        autodiff = self.subject.fw.name != "numpy"
        if got.size == 1 and values.size > 1:
            out = [self._scalar_whole(op), self._scalar_units(op)]
            if autodiff:
                out += self._autodiff(weight=self.weight)
            return out
        squeeze = lambda s: tuple(n for n in s if n != 1)  # noqa: E731
        if squeeze(got.shape) == squeeze(values.shape):
            out = [self._values_comparison("loss (per value)", got.reshape(values.shape), values, ())]
            if autodiff:
                out += self._autodiff(weight=1.0)
            return out
        per_sample = tuple(range(1, values.ndim))
        if self.sample.unit == "element" and values.ndim > 1 and squeeze(got.shape) == squeeze(
                values.shape[:1]):
            reduced = values.mean(axis=per_sample, keepdims=True) if op == "mean" else \
                values.sum(axis=per_sample, keepdims=True)
            out = [self._values_comparison("loss (per sample)", got.reshape(reduced.shape), reduced, per_sample)]
            if autodiff:
                out += self._autodiff(weight=1.0 / (values.size // values.shape[0]) if op == "mean" else 1.0)
            return out
        expected_text = "a scalar, the per-value shape " + str(values.shape)
        if self.sample.unit == "element" and values.ndim > 1:
            expected_text += f" or per sample {values.shape[:1]}"
        moved = self._reductions_moved(got, expected_text)
        if moved is not None:
            return [moved]
        return [self._wrong_shape("loss", got, values, expected_text, op=op)]

    def _reductions_moved(self, got, expected_text) -> Comparison | None:
        """A per-sample formula whose reductions run over another axis (the batch, or everything)
        gives the function's shape: wrong_axis, with the axis named."""
        from .evaluate import Model

        reductions = [r for r in getattr(self.loss.definition, "reductions", ()) if r.kind != "count"]
        if not reductions or np.ndim(self.inputs[self.targets[0]]) != 2:
            return None
        squeezed = tuple(n for n in got.shape if n != 1)
        names = {"-2": "axis 0 (the batch axis)", "sample": "the per-sample axes", "all": "every axis"}
        for axis, text in names.items():
            if all(r.axis == axis for r in reductions):
                continue
            definition = dataclasses.replace(self.loss.definition, reductions=tuple(
                dataclasses.replace(r, axis=axis) if r.kind != "count" else r
                for r in self.loss.definition.reductions))
            try:
                with frameworks.quiet():
                    alternative = np.asarray(Model(definition, self.sample.parameters).evaluate(
                        self.loss.derivation.value, self.inputs), np.float64)
            except Exception:  # noqa: BLE001 - not expressible this way
                continue
            if tuple(n for n in alternative.shape if n != 1) != squeezed:
                continue
            alternative = alternative.reshape(got.shape)
            comparison = judge(self.evidence("loss", got, alternative, units=None), self.ctx)
            if comparison.verdict == "differs":
                continue
            comparison.verdict = "differs"
            comparison.diagnosis = [Diagnosis(
                "wrong_axis", {"axes": axis, "shape": list(got.shape), "expected": expected_text},
                f"returns shape {tuple(got.shape)}: its reductions run over {text}, where the formula's run "
                f"over {', '.join(sorted({names.get(r.axis, 'axis ' + r.axis) for r in reductions}))}", "loss")]
            comparison.notes.append("compared with the formula's reductions moved to that axis: they agree")
            return comparison
        return None

    def _values_comparison(self, label, got, expected, axes) -> Comparison:
        def reduce(v):
            v = np.asarray(v, np.float64)
            if not axes:
                return v
            return v.mean(axis=axes, keepdims=True) if self.reduction != "sum" else v.sum(axis=axes, keepdims=True)

        def evaluate(columns):
            inputs, hosts = self.substitute(columns)
            g = np.asarray(self.subject(inputs), np.float64).reshape(np.shape(reduce(self.reference.values(inputs))))
            r = reduce(self.reference.values(inputs))
            return self.at_hosts(g, hosts), self.at_hosts(r, hosts)

        def swapped(pair):
            return np.asarray(self.subject(self.inputs, swap=pair), np.float64)

        return judge(self.evidence(label, got, expected, evaluate=evaluate if not axes else None, swapped=swapped,
                                   truth=self.truth("values") if not axes else None), self.ctx)

    def _scalar_whole(self, op: str) -> Comparison:
        """The scalar on the random points only (the edges are checked one at a time)."""
        bulk = np.flatnonzero(self.sample.origin == 0)
        if self.sample.unit == "element" and not self.sample.flat:
            bulk = bulk[:len(bulk) - len(bulk) % self.sample.width]
        part = self.sample.take(bulk)
        inputs = part.inputs()
        got = np.asarray(self.subject(inputs), np.float64).reshape(())
        values = self.reference.values(inputs)
        ref = values.mean() if op == "mean" else values.sum()
        comparison = judge(self.evidence("loss (whole batch)", got.reshape(1), np.reshape(ref, 1), units=None),
                           self.ctx)
        if comparison.verdict == "differs" and np.isfinite(got) and ref != 0:
            c = float(got / ref)
            counts = {"N": int(values.size), "B": int(np.shape(values)[0]) if np.ndim(values) else 1,
                      "D": self.sample.width}
            factor, meaning = name_factor(abs(c), counts)
            if c < 0:
                comparison.diagnosis.append(Diagnosis("sign_flip", {"factor": -1}, "the sign is flipped",
                                                      comparison.name))
            if abs(abs(c) - 1) > 1e-6 and (meaning or "=" in factor):
                comparison.diagnosis.append(Diagnosis(
                    "scale_factor", {"factor": abs(c), "as": factor, "meaning": meaning},
                    f"off by a constant factor {factor}" + (f": {meaning}" if meaning else ""), comparison.name))
        comparison.notes.append(f"on the {len(bulk):,} random {'elements' if self.sample.unit == 'element' else 'samples'}")
        return comparison

    def _probe_units(self) -> np.ndarray:
        special = np.flatnonzero(self.sample.origin != 0)
        rng = np.random.default_rng(1)
        if len(special) > PROBES - 64:
            special = np.sort(rng.choice(special, PROBES - 64, replace=False))
        bulk = np.flatnonzero(self.sample.origin == 0)
        bulk = np.sort(rng.choice(bulk, min(len(bulk), PROBES - len(special)), replace=False))
        return np.concatenate([special, bulk])

    def _scalar_units(self, op: str) -> Comparison:
        """One call per unit (an element, or a sample): where the loss differs."""
        units = self._probe_units()
        if self.sample.unit == "batch":
            groups = [units[i:i + 2] for i in range(0, len(units) - 1, 2)]
        else:
            groups = [np.array([u]) for u in units]

        def one(inputs, swap=None):
            return float(np.asarray(self.subject(inputs, swap), np.float64).reshape(-1)[0])

        def expected(inputs):
            v = self.reference.values(inputs)
            return float(v.mean() if op == "mean" else v.sum())

        def unit_inputs(group):
            if len(group) == 1:
                return self.sample.unit_inputs(int(group[0]))
            return self.sample.take(group).inputs()

        got = np.array([one(unit_inputs(g)) for g in groups])
        ref = np.array([expected(unit_inputs(g)) for g in groups])

        def evaluate(columns):
            k = len(next(iter(columns.values())))
            tmp = dataclasses.replace(self.sample, columns=columns, origin=np.zeros(k, np.int8))
            ins = [tmp.unit_inputs(i) for i in range(k)]
            return np.array([one(x) for x in ins]), np.array([expected(x) for x in ins])

        def swapped(pair):
            return np.array([one(unit_inputs(g), pair) for g in groups])

        unit_index = np.array([g[0] for g in groups]) if self.sample.unit != "batch" else None
        label = {"element": "loss (one element at a time)", "sample": "loss (one sample at a time)",
                 "batch": "loss (small batches)"}[self.sample.unit]
        return judge(self.evidence(label, got, ref, evaluate=evaluate if unit_index is not None else None,
                                   swapped=swapped, units=unit_index,
                                   truth=self.truth("values") if unit_index is not None else None), self.ctx)

    def _autodiff(self, weight: float) -> list[Comparison]:
        """The framework's autodiff of the function's result against the symbolic gradient."""
        name = {"torch": "torch.autograd", "tensorflow": "tf.GradientTape", "jax": "jax.grad"}[self.subject.fw.name]
        try:
            grads, _ = self.subject.gradients(self.inputs, self.targets)
        except CheckInputError as error:
            self.notes.append(f"autodiff not checked: {error}")
            return []
        except Exception as error:  # noqa: BLE001 - the function does not differentiate; say so
            self.notes.append(f"autodiff not checked: {type(error).__name__}: {error}")
            return []
        expected = self.reference.grad(self.inputs)
        out = []
        for i, (target, g, ref) in enumerate(zip(self.targets, grads, expected)):
            ref = weight * ref
            note = ()
            if g is None:
                g = np.zeros_like(ref)
                note = (f"the result does not depend on {target} as far as {name} can tell",)

            def evaluate(columns, i=i, weight=weight):
                inputs, hosts = self.substitute(columns)
                gs, _ = self.subject.gradients(inputs, self.targets)
                gi = gs[i] if gs[i] is not None else np.zeros_like(inputs[self.targets[i]])
                r = weight * self.reference.grad(inputs)[i]
                return self.at_hosts(gi, hosts), self.at_hosts(r, hosts)

            def swapped(pair, i=i):
                gs, _ = self.subject.gradients(self.inputs, self.targets, swap=pair)
                return gs[i] if gs[i] is not None else np.zeros_like(expected[i])

            out.append(judge(self.evidence(f"{name} of the loss by {target}", np.asarray(g).reshape(ref.shape), ref,
                                           evaluate=evaluate, swapped=swapped, target=target, notes=note,
                                           truth=self.truth("grad", (i,), weight)), self.ctx))
        return out


def _axis_subsets(ndim: int):
    axes = tuple(range(ndim))
    for k in range(1, ndim + 1):
        yield from itertools.combinations(axes, k)
