"""Custom objectives and evaluation metrics for XGBoost and LightGBM from a compiled loss.

A boosting library grows each tree on per-sample first and second derivatives of the loss in the
margin (the raw score before any link function). For sample i with label y_i, margin z_i and
weight w_i (1 without weights),

    g_i = w_i * dl(y_i, z_i) / dz_i,        h_i = w_i * rule(d2l(y_i, z_i) / dz_i^2),

the derivatives of the *sum* of the per-sample losses: the libraries sum the g_i and h_i of a leaf
(leaf value -sum g / (sum h + lambda)), so there is no 1/N. Both come from the emitted NumPy module
of the loss compiled with reduction='sum' (its `grad`; its `hessian`, which is the diagonal for an
elementwise loss).

Multi-class (softmax cross-entropy on (N, K) margins, class-index labels). The per-sample Hessian
block is diag(p) - p p^T, p = softmax(z_i); both libraries take its diagonal p (1 - p), scaled: XGBoost
(multi:softprob) by 2, LightGBM (multiclass) by K / (K - 1), Friedman's (2001) (K - 1) / K factor in the
leaf value. `multiclass_scale` is that factor: by default the library's own, so that the generated
objective reproduces the built-in one; 1 gives the plain diagonal. Margins, gradients and Hessians
are (N, K) arrays, the layout of XGBoost >= 2 and LightGBM >= 4. Integer labels become one-hot rows for
a `simplex` or `onehot` label argument (softmax_ce) and stay indices for an `index` one
(sparse_softmax_ce).

Hessian rules (`hessian=`), for losses whose second derivative vanishes or turns negative:

- 'exact': the derived l'', floored, max(l'', hessian_floor). The default floor 1e-16 is XGBoost's
  own guard in its logistic and softmax objectives; it only keeps a saturated sample from a zero
  Hessian. Where l'' < 0 (Tukey or Cauchy far from the fit) the floor replaces it.
- 'constant': h = 1 (times the weight). The rule of XGBoost's and LightGBM's own L1 and quantile
  objectives (reg:absoluteerror, reg:quantileerror; l1, quantile) and of Friedman's gradient
  boosting: each leaf moves by the mean negative gradient. Those built-in objectives then also refit
  each leaf to a quantile of its residuals, a step that the custom-objective interfaces of neither
  library expose; without it, give the model enough rounds (and an `init_score`).
- 'auto' (default): 'exact' for a loss whose l'' is positive, 'constant' for one whose l'' vanishes on
  a region or turns negative: pinball, mae, hinge (zero everywhere), huber, squared_hinge (zero beyond
  a threshold), tukey and cauchy (negative far out). Decided on a probe grid: labels typical of the
  label's domain, margins from 20 below to 20 above each. A zero or negative l'' makes the Hessian
  sums of whole leaves (nearly) zero: the leaf value -G / (H + lambda) then explodes where lambda is
  0 (LightGBM's default), and splits fall under min_child_weight (XGBoost) or
  min_sum_hessian_in_leaf (LightGBM), so trees stop growing; the constant rule has neither problem.

The evaluation metric is the loss itself, the weighted mean sum_i w_i l_i / sum_i w_i over samples
(the libraries' built-in metrics are weighted means too), lower is better.

With a custom objective neither library starts from the best constant (as boost_from_average and
XGBoost's intercept estimate do for built-in objectives): its margins start at 0 (LightGBM, and XGBoost
with base_score=0). `init_score(labels, weight)` gives that constant for a one-output loss.
"""

from __future__ import annotations

import math
import threading
import types
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np

from . import runtime
from .compiler import CompiledLoss
from .errors import LossNameError, LossOptionError, did_you_mean

LIBRARIES = ("xgboost", "lightgbm")
HESSIAN_RULES = ("auto", "exact", "constant")
DEFAULT_HESSIAN_FLOOR = 1e-16
_ONE_HOT_DOMAINS = ("simplex", "onehot")
_LOADING = threading.Lock()


class BoostingInputError(LossOptionError):
    """Labels, margins or weights a generated objective cannot use (shape, class labels)."""


# ---------------------------------------------------------------------------------------------
# Per-sample derivatives from the emitted NumPy module.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """Which argument of the loss is the label and which the margin, and the rule for l''."""

    name: str
    arguments: tuple[str, ...]
    label: str
    margin: str
    label_domain: str
    kind: str                       # the module's KIND: 'elementwise' or 'per_sample'
    params: tuple[tuple[str, float], ...]
    rule: str                       # 'exact' or 'constant' (auto resolved)
    floor: float


class Derivatives:
    """g_i and h_i of a loss per sample, from its emitted NumPy module (reduction='sum').

    Picklable (a Dask worker or a pickled scikit-learn model gets the module's source and loads it
    again), so the objective runs wherever the library calls it."""

    def __init__(self, source: str, layout: _Layout, module: types.ModuleType | None = None):
        self.source = source
        self.layout = layout
        self._module = module

    @property
    def module(self) -> types.ModuleType:
        if self._module is None:
            with _LOADING:          # one load per process, also when worker threads unpickle at once
                if self._module is None:
                    self._module = runtime.load(self.source, f"{self.layout.name}_boosting")
        return self._module

    def __getstate__(self) -> dict[str, Any]:
        return {"source": self.source, "layout": self.layout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.source = state["source"]
        self.layout = state["layout"]
        self._module = None

    # -- inputs ---------------------------------------------------------------------------

    def margins(self, preds: Any, where: str) -> np.ndarray:
        z = np.asarray(preds, dtype=np.float64)
        if z.ndim not in (1, 2) or z.shape[0] == 0:
            raise BoostingInputError(f"{where}: margins must be a non-empty array of shape (n,) or (n, K), "
                                     f"not {z.shape}")
        if self.layout.kind == "per_sample" and z.ndim != 2:
            raise BoostingInputError(
                f"{where}: '{self.layout.name}' reduces over the K outputs of a sample (multi-class), so its "
                f"margins are (n, K); got shape {z.shape}: set num_class=K in the library's parameters")
        return z

    def labels(self, labels: Any, z: np.ndarray, where: str) -> np.ndarray:
        """The label argument as the loss takes it, from the library's labels."""
        y = np.asarray(labels, dtype=np.float64)
        n = z.shape[0]
        if y.ndim == 2 and y.shape == z.shape and self.layout.label_domain != "index":
            return y
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
        if y.shape != (n,):
            raise BoostingInputError(f"{where}: labels of shape {y.shape} do not match margins of shape "
                                     f"{z.shape}: one label per sample, ({n},)")
        if z.ndim == 1:
            if self.layout.label_domain == "index":
                raise BoostingInputError(f"{where}: '{self.layout.label}' holds class indices, which need "
                                         f"(n, K) margins; got ({n},)")
            return y
        k = z.shape[1]
        if self.layout.kind != "per_sample" or not (self.layout.label_domain in _ONE_HOT_DOMAINS
                                                    or self.layout.label_domain == "index"):
            raise BoostingInputError(
                f"{where}: '{self.layout.name}' takes '{self.layout.label}' ({self.layout.label_domain}) per "
                f"output; with (n, {k}) margins give labels of shape (n, {k}), not ({n},)")
        bad = (y != np.round(y)) | (y < 0) | (y >= k)
        if np.any(bad):
            raise BoostingInputError(f"{where}: multi-class labels must be class indices 0 to {k - 1} "
                                     f"for {k} classes; found {float(y[bad][0]):g}")
        if self.layout.label_domain == "index":
            return y
        return (y[:, None] == np.arange(k)).astype(np.float64)

    @staticmethod
    def weights(weight: Any, n: int, where: str) -> np.ndarray | None:
        if weight is None:
            return None
        w = np.asarray(weight, dtype=np.float64).reshape(-1)
        if w.size == 0:                       # XGBoost's get_weight() without weights
            return None
        if w.shape != (n,):
            raise BoostingInputError(f"{where}: {w.size} sample weights for {n} samples")
        return w

    def _arguments(self, y: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
        return [z if a == self.layout.margin else y for a in self.layout.arguments]

    # -- derivatives and values -----------------------------------------------------------

    def gradient_hessian(self, labels: Any, preds: Any, weight: Any, multiclass_scale: float | None,
                         where: str) -> tuple[np.ndarray, np.ndarray]:
        """(g, h) shaped like the margins, float64."""
        z = self.margins(preds, where)
        y = self.labels(labels, z, where)
        w = self.weights(weight, z.shape[0], where)
        mod, params = self.module, dict(self.layout.params)
        args = self._arguments(y, z)
        with np.errstate(over="ignore", under="ignore"):
            g = np.array(np.broadcast_to(mod.grad(*args, **params), z.shape), dtype=np.float64)
            if self.layout.rule == "constant":
                h = np.ones_like(z)
            elif self.layout.kind == "per_sample":
                h = self._block_diagonal(args, z, params)
            else:
                h = np.array(np.broadcast_to(mod.hessian(*args, **params), z.shape), dtype=np.float64)
        if self.layout.rule == "exact":
            h = np.maximum(h, self.layout.floor)
        if self.layout.kind == "per_sample" and self.layout.rule == "exact" and multiclass_scale is not None:
            h = h * multiclass_scale
        if w is not None:
            scale = w[:, None] if z.ndim == 2 else w
            g, h = g * scale, h * scale
        return g, h

    def _block_diagonal(self, args: list[np.ndarray], z: np.ndarray, params: dict) -> np.ndarray:
        """The diagonal of each sample's Hessian block, (n, K): one Hessian-vector product per class."""
        h = np.empty_like(z)
        basis = np.zeros_like(z)
        for c in range(z.shape[1]):
            basis[:, c] = 1.0
            h[:, c] = np.asarray(self.module.hvp(*args, basis, **params), dtype=np.float64)[:, c]
            basis[:, c] = 0.0
        return h

    def mean_loss(self, labels: Any, preds: Any, weight: Any, where: str) -> float:
        """sum_i w_i l_i / sum_i w_i."""
        z = self.margins(preds, where)
        y = self.labels(labels, z, where)
        w = self.weights(weight, z.shape[0], where)
        with np.errstate(over="ignore", under="ignore"):
            values = np.asarray(self.module.values(*self._arguments(y, z), **dict(self.layout.params)),
                                dtype=np.float64)
        per_sample = values.reshape(z.shape[0], -1).sum(axis=1)     # an elementwise loss on (n, K): sum
        return float(np.average(per_sample, weights=w))


# ---------------------------------------------------------------------------------------------
# The callables each library expects.
# ---------------------------------------------------------------------------------------------

def _library_scale(library: str, k: int) -> float:
    """The factor on the diagonal p (1 - p) of the softmax Hessian block that the library uses."""
    return 2.0 if library == "xgboost" else k / (k - 1.0)


class _Callable:
    """A picklable callable over the shared `Derivatives` (pickle takes instances, not closures)."""

    def __init__(self, owner: "BoostingObjective"):
        self.owner = owner
        self.__name__ = owner.name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.owner.name} for {self.owner.library}>"


class _TrainObjective(_Callable):
    """obj(preds, dtrain) -> (grad, hess) for xgboost.train(obj=...) and lightgbm.train(params={'objective': ...})."""

    def __call__(self, preds, dtrain):
        return self.owner.gradients(dtrain.get_label(), preds, dtrain.get_weight(), "the objective")


class _XGBoostSklearnObjective(_Callable):
    """objective(y_true, y_pred, *, sample_weight=None) -> (grad, hess) for XGBRegressor/XGBClassifier."""

    def __call__(self, y_true, y_pred, *, sample_weight=None):
        return self.owner.gradients(y_true, y_pred, sample_weight, "the objective")


class _LightGBMSklearnObjective(_Callable):
    """objective(y_true, y_pred, weight) -> (grad, hess) for LGBMRegressor/LGBMClassifier (LightGBM
    passes the weights when the objective takes three arguments; None without weights)."""

    def __call__(self, y_true, y_pred, weight):
        return self.owner.gradients(y_true, y_pred, weight, "the objective")


class _XGBoostTrainMetric(_Callable):
    """custom_metric(preds, dtrain) -> (name, value) for xgboost.train; lower is better (maximize=False)."""

    def __call__(self, preds, dtrain):
        return self.owner.name, self.owner.mean_loss(dtrain.get_label(), preds, dtrain.get_weight())


class _XGBoostSklearnMetric(_Callable):
    """eval_metric(y_true, y_pred, sample_weight=None) -> value for the XGBoost estimators (named by
    __name__, minimized)."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        return self.owner.mean_loss(y_true, y_pred, sample_weight)


class _LightGBMTrainMetric(_Callable):
    """feval(preds, eval_data) -> (name, value, is_higher_better=False) for lightgbm.train."""

    def __call__(self, preds, eval_data):
        return self.owner.name, self.owner.mean_loss(eval_data.get_label(), preds, eval_data.get_weight()), False


class _LightGBMSklearnMetric(_Callable):
    """eval_metric(y_true, y_pred, weight) -> (name, value, is_higher_better=False) for the LightGBM
    estimators."""

    def __call__(self, y_true, y_pred, weight):
        return self.owner.name, self.owner.mean_loss(y_true, y_pred, weight), False


class BoostingObjective:
    """A loss as a custom objective and evaluation metric for one boosting library.

    Attributes, each a picklable callable in the library's convention:

    ==================  =================================================  ===============================================
                        xgboost                                            lightgbm
    ==================  =================================================  ===============================================
    objective           obj(preds, dtrain) -> (grad, hess):                 (preds, train_data) -> (grad, hess):
                        xgboost.train(params, dtrain, obj=...)              lightgbm.train({"objective": ...}, train_set)
    sklearn_objective   (y_true, y_pred, *, sample_weight=None):            (y_true, y_pred, weight):
                        XGBRegressor(objective=...)                         LGBMRegressor(objective=...)
    metric              (preds, dtrain) -> (name, value):                   (preds, eval_data) -> (name, value, False):
                        xgboost.train(..., custom_metric=...)               lightgbm.train(..., feval=...)
    sklearn_metric      (y_true, y_pred, sample_weight=None) -> value:      (y_true, y_pred, weight) -> (name, value, False):
                        XGBRegressor(eval_metric=...)                       LGBMRegressor().fit(..., eval_metric=...)
    ==================  =================================================  ===============================================
    """

    def __init__(self, library: str, derivatives: Derivatives, multiclass_scale: float | None):
        self.library = library
        self.derivatives = derivatives
        self.multiclass_scale = multiclass_scale
        self.name = derivatives.layout.name
        self.objective = _TrainObjective(self)
        self.metric = _XGBoostTrainMetric(self) if library == "xgboost" else _LightGBMTrainMetric(self)
        if library == "xgboost":
            self.sklearn_objective: _Callable = _XGBoostSklearnObjective(self)
            self.sklearn_metric: _Callable = _XGBoostSklearnMetric(self)
        else:
            self.sklearn_objective = _LightGBMSklearnObjective(self)
            self.sklearn_metric = _LightGBMSklearnMetric(self)

    @property
    def label(self) -> str:
        return self.derivatives.layout.label

    @property
    def margin(self) -> str:
        return self.derivatives.layout.margin

    @property
    def hessian_rule(self) -> str:
        """'exact' (floored at hessian_floor) or 'constant': the rule in force ('auto' resolved)."""
        return self.derivatives.layout.rule

    def describe(self) -> str:
        """The objective in words: arguments, derivatives and the Hessian rule."""
        layout = self.derivatives.layout
        if layout.rule == "constant":
            rule = "h = 1 (constant Hessian: each leaf moves by the mean negative gradient)"
        else:
            rule = f"h = max(d2l/d{layout.margin}^2, {layout.floor:g})"
        lines = [f"{self.library} objective for {self.name}: label {layout.label}, margin {layout.margin}",
                 f"    g = w * dl/d{layout.margin}, per sample (the derivative of the sum, no 1/N)",
                 f"    {rule}, times w"]
        if layout.kind == "per_sample":
            scale = ("the library's: 2" if self.library == "xgboost" else "the library's: K / (K - 1)") \
                if self.multiclass_scale is None else f"{self.multiclass_scale:g}"
            lines.append(f"    multi-class: the diagonal of each sample's Hessian block, times {scale}")
        lines.append(f"    metric: {self.name}, the weighted mean loss, lower is better")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"BoostingObjective({self.name}, library={self.library!r}, label={self.label!r}, "
                f"margin={self.margin!r}, hessian={self.hessian_rule!r})")

    def __getstate__(self) -> dict[str, Any]:
        return {"library": self.library, "derivatives": self.derivatives, "multiclass_scale": self.multiclass_scale}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["library"], state["derivatives"], state["multiclass_scale"])

    def gradients(self, labels: Any, preds: Any, weight: Any = None,
                  where: str = "gradients") -> tuple[np.ndarray, np.ndarray]:
        """(grad, hess) per sample, shaped like `preds`: (n,) or (n, K)."""
        scale = self.multiclass_scale
        z_shape = np.shape(preds)
        if scale is None and len(z_shape) == 2 and self.derivatives.layout.kind == "per_sample":
            if z_shape[1] < 2:
                raise BoostingInputError(f"{where}: multi-class margins need K >= 2 columns, not {z_shape}")
            scale = _library_scale(self.library, z_shape[1])
        return self.derivatives.gradient_hessian(labels, preds, weight, scale, where)

    def mean_loss(self, labels: Any, preds: Any, weight: Any = None) -> float:
        """The evaluation metric's value: sum_i w_i l(y_i, z_i) / sum_i w_i."""
        return self.derivatives.mean_loss(labels, preds, weight, "the metric")

    def init_score(self, labels: Any, weight: Any = None) -> float:
        """The constant margin c minimizing sum_i w_i l(y_i, c): the start a built-in objective takes
        (boost_from_average); give it as base_score (XGBoost) or init_score (LightGBM). One output only."""
        if self.derivatives.layout.kind == "per_sample":
            raise LossOptionError("init_score gives one constant margin; multi-class models start at 0")
        try:
            from scipy.optimize import minimize_scalar
        except ImportError:
            raise LossOptionError("init_score needs SciPy (pip install scipy)") from None
        y = np.asarray(labels, dtype=np.float64).reshape(-1)
        w = self.derivatives.weights(weight, y.size, "init_score")
        spread = float(np.std(y)) if y.size > 1 else 1.0
        center = float(np.median(y))

        def total(c: float) -> float:
            value = self.mean_loss(y, np.full_like(y, c), w)
            return value if math.isfinite(value) else math.inf

        result = minimize_scalar(total, bracket=(center - spread - 1, center + spread + 1),
                                 method="brent", options={"xtol": 1e-10})
        return float(result.x)


# ---------------------------------------------------------------------------------------------
# Building one.
# ---------------------------------------------------------------------------------------------

# Label values typical of each domain, for the probe of l'' in `_curvature_is_positive`.
_PROBE_LABELS = {"real": (-2.0, 0.0, 1.5), "positive": (0.5, 1.0, 4.0), "nonnegative": (0.0, 1.0, 4.0),
                 "unit": (0.1, 0.5, 0.9), "binary": (0.0, 1.0), "sign": (-1.0, 1.0), "count": (0.0, 1.0, 7.0)}
_PROBE_OFFSETS = np.linspace(-20.0, 20.0, 401)


def _curvature_is_positive(module: types.ModuleType, layout: _Layout) -> bool:
    """False when l'' is negative at a point of the probe grid, or zero at more than one margin for a
    label (zero on a region, not just at a kink): labels typical of the label's domain, margins
    label + [-20, 20]."""
    labels = _PROBE_LABELS.get(layout.label_domain)
    if labels is None:
        return True
    y = np.repeat(np.asarray(labels), _PROBE_OFFSETS.size)
    z = y + np.tile(_PROBE_OFFSETS, len(labels))
    args = [z if a == layout.margin else y for a in layout.arguments]
    with np.errstate(all="ignore"):
        h = np.asarray(module.hessian(*args, **dict(layout.params)), dtype=np.float64)
    h = np.broadcast_to(h, z.shape).reshape(len(labels), _PROBE_OFFSETS.size)
    finite = np.isfinite(h)
    return not (np.any(finite & (h < 0)) or np.any(np.sum(finite & (h == 0), axis=1) > 1))


def _rule(hessian: str, module: types.ModuleType, layout: _Layout) -> str:
    if hessian != "auto":
        return hessian
    if layout.kind == "per_sample":                 # softmax: the diagonal p (1 - p) of a PSD block
        return "exact"
    return "exact" if _curvature_is_positive(module, layout) else "constant"


def build(compiled: CompiledLoss, library: str, *, label: str | None = None,
          params: Mapping[str, float] | None = None, hessian: str = "auto",
          hessian_floor: float = DEFAULT_HESSIAN_FLOOR,
          multiclass_scale: float | None = None) -> BoostingObjective:
    """`compiled` as a custom objective and metric for `library` ('xgboost' or 'lightgbm').

    label: the loss argument that holds the labels (default: the one argument besides the target,
        which is the margin). params: the loss's parameters at run time (pinball's tau, ...).
    hessian: 'auto', 'exact' (max(l'', hessian_floor)) or 'constant' (h = 1); see the module notes.
    multiclass_scale: the factor on the diagonal of a multi-class Hessian block (default: the
        library's own, 2 for XGBoost, K / (K - 1) for LightGBM).
    """
    if library not in LIBRARIES:
        raise LossOptionError(f"unknown boosting library '{library}'{did_you_mean(str(library), LIBRARIES)}; "
                              f"choose one of {', '.join(LIBRARIES)}")
    definition = compiled.definition
    if len(compiled.targets) != 1:
        raise LossOptionError(f"a boosting objective has one margin; '{compiled.name}' has "
                              f"{len(compiled.targets)} targets ({', '.join(compiled.targets)})")
    margin = compiled.targets[0]
    others = [a.name for a in definition.arguments if a.name != margin]
    if label is None:
        if len(others) != 1:
            raise LossOptionError(
                f"'{compiled.name}' has {len(others)} arguments besides its margin {margin} "
                f"({', '.join(others) or 'none'}); a boosting objective takes (labels, margins): "
                f"{'name the label argument with label=' if others else 'the loss needs a label argument'}")
        label = others[0]
    elif label not in others:
        raise LossNameError(f"label '{label}' is not an argument of '{compiled.name}' besides its margin "
                            f"{margin}{did_you_mean(str(label), others)} (its arguments: "
                            f"{', '.join(a.name for a in definition.arguments)})")
    elif len(others) != 1:
        raise LossOptionError(f"'{compiled.name}' has arguments besides the label '{label}' and the margin "
                              f"{margin} ({', '.join(o for o in others if o != label)}); a boosting objective "
                              f"takes only (labels, margins)")
    values: dict[str, float] = {p.name: float(p.default) for p in definition.parameters}
    for key, value in (params or {}).items():
        if key not in values:
            raise LossNameError(f"'{compiled.name}' has no parameter '{key}'{did_you_mean(key, values)} "
                                f"(its parameters: {', '.join(values) or 'none'})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise LossOptionError(f"parameter '{key}' must be a finite number, not {value!r}")
        values[key] = float(value)
    if isinstance(hessian_floor, bool) or not isinstance(hessian_floor, (int, float)) \
            or not (math.isfinite(hessian_floor) and hessian_floor >= 0):
        raise LossOptionError(f"hessian_floor must be a finite number >= 0, not {hessian_floor!r}")
    if multiclass_scale is not None and (isinstance(multiclass_scale, bool)
                                         or not isinstance(multiclass_scale, (int, float))
                                         or not (math.isfinite(multiclass_scale) and multiclass_scale > 0)):
        raise LossOptionError(f"multiclass_scale must be a finite number > 0 (or None for the library's own), "
                              f"not {multiclass_scale!r}")
    if hessian not in HESSIAN_RULES:
        raise LossOptionError(f"unknown hessian rule '{hessian}'{did_you_mean(str(hessian), HESSIAN_RULES)}; "
                              f"choose one of {', '.join(HESSIAN_RULES)}")
    source = replace(compiled, reduction="sum").emit("numpy")
    module = runtime.load(source, f"{compiled.name}_boosting")
    if module.KIND == "whole_batch":
        raise LossOptionError(f"'{compiled.name}' reduces over the whole batch (axis=all): it is not a sum "
                              f"of per-sample losses, so it has no per-sample gradient for a boosting library")
    layout = _Layout(name=compiled.name, arguments=tuple(a.name for a in definition.arguments), label=label,
                     margin=margin, label_domain=definition.argument(label).domain, kind=module.KIND,
                     params=tuple(values.items()), rule=hessian, floor=float(hessian_floor))
    layout = replace(layout, rule=_rule(hessian, module, layout))
    return BoostingObjective(library, Derivatives(source, layout, module),
                             None if multiclass_scale is None else float(multiclass_scale))
