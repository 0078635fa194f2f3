"""Fitting a linear model `target = X @ w` under a compiled loss: damped Newton with the generated
Hessian, or (proximal) gradient descent.

The objective is the reduced loss plus the seed's `regularized_loss` penalties,

    F(w) = L(y, X @ w) + l1 * sum |w_j| + l2 * sum w_j^2

(elastic net with `alpha` and `l1_ratio` is l1 = alpha * l1_ratio, l2 = alpha * (1 - l1_ratio)), and
its derivatives are assembled from the emitted NumPy module, with the penalties added analytically:

    grad F = X^T grad(y, X @ w) + 2 l2 w (+ l1 sign(w))
    hess F = newton_hessian(X, y, w) + 2 l2 I              (= X^T diag(l'') X / n + 2 l2 I)

Vector outputs. When the model has k outputs, `target = X @ W` with W of shape (d, k), and the
methods work on vec(W) in the row-major order of W: grad F = X^T grad(y, X @ W) + 2 l2 W, and
newton_hessian gives the (d k, d k) matrix sum_i (x_i x_i^T) (x) H_i / n from the per-sample blocks
H_i of a per-sample loss (softmax regression: softmax_ce, sparse_softmax_ce), or the block-diagonal
matrix of a multi-output elementwise loss (mse with a target of k columns). k comes from `classes=`,
else from the labels: max label + 1 for `index` labels, y.shape[1] for `simplex` or `onehot` rows
and for the (n, k) targets of an elementwise loss.

Softmax regression, and any loss whose value does not change when the same constant is added to
all k outputs of a sample, has a singular Hessian: W and W + v 1^T (any v in R^d) give the same
probabilities, so vec(W) has a d-dimensional flat direction. `fit_linear` checks for that
invariance numerically (the per-sample blocks' row sums H_i 1 vanish) and then

- with l2 > 0 fits W itself: the penalty makes the Hessian positive definite, and the solution has
  rows that sum to zero (the penalty picks the smallest of the equivalent W);
- with l2 = 0 fixes a reference class, W[:, r] = 0 with r = `reference_class` (class 0 unless
  given), and solves for the other k - 1 columns, as statsmodels' MNLogit and R's nnet::multinom
  do. The maximum-likelihood W is unique only up to the shift; differences of columns
  W[:, j] - W[:, m] and the fitted probabilities are the same in every parameterization.

Either method uses the same parameterization; a `w0` is shifted so that its reference column is
zero (the same model). `reference_class=` with l2 > 0 fits the constrained model instead; for a
loss without the invariance it is refused.

Newton's method (`method="newton"`): the direction solves hess F p = -grad F by a Cholesky
factorization (never an explicit inverse); the step t p takes the first t in 1, 1/2, 1/4, ... that
passes Armijo's test F(w + t p) <= F(w) + c1 t grad F . p. It applies to a loss whose curvature is
positive where the fit is; it refuses, with `NewtonNotApplicableError`,

- a loss whose second derivative l'' is zero on every branch (mae, pinball, hinge, underestimation:
  piecewise linear, so X^T diag(l'') X is the zero matrix almost everywhere), decided symbolically
  before any iteration;
- a Hessian that is not positive definite at an iterate (tukey or cauchy far from the fit, where
  l'' < 0; huber with too few residuals inside delta, where the matrix is singular), decided by the
  Cholesky factorization failing;
- an L1 penalty: |w| has no second derivative at 0, where the solution's zeros sit (a proximal
  Newton method would need an inner solver). Use `method="gd"`, which handles l1 exactly;
- a loss with a reduction over the whole batch (axis=all, such as dice; the module's KIND is
  'whole_batch'): its Hessian in w is not a sum over samples, and the module has no newton_hessian.

Gradient descent (`method="gd"`) is proximal gradient (ISTA): w+ = soft_threshold(w - t g, t l1),
with a fixed `step_size`, or by default backtracking on the sufficient-decrease test of Beck and
Teboulle (2009), f(w+) <= f(w) + g . (w+ - w) + |w+ - w|^2 / (2t), starting each search from twice
the last accepted step. Without l1 this is gradient descent with Armijo backtracking (c1 = 1/2).

Both stop when the gradient norm is at most `tol` (with l1 > 0: the norm of the minimum-norm
subgradient, zero exactly at the optimum). Close to the optimum the decrease a step must show falls
below the rounding of F; within that margin (16 machine epsilons times |F|) a step is taken only if
it reduces the gradient norm, so that the last, quadratically convergent Newton steps still go
through while a gradient step that is too long is still caught.

Dask arrays (X chunked by rows, y and the inputs alike) go to `losscomp.fit_dask`: the same iteration,
with the sums over samples computed chunk by chunk on the workers of a Dask cluster.
"""

from __future__ import annotations

import functools
import importlib
import math
import numbers
import sys
import time
import types
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TextIO

import numpy as np
import sympy

from .compiler import CompiledLoss
from .compiler import compile as compile_loss
from .errors import LossNameError, LossOptionError, did_you_mean

METHODS = ("newton", "gd")
_ARMIJO_C1 = 1e-4
_SHRINK = 0.5
_MAX_HALVINGS = 60
_ROUNDING = 16 * np.finfo(np.float64).eps

# Smooth catalog losses to suggest when Newton's method does not apply.
_ALTERNATIVES = {
    "mae": "huber (quadratic near 0, as robust as mae far out) or log_cosh (smooth everywhere)",
    "pinball": ("a smoothed pinball loss, tau * e + s * softplus(-e / s) where e = y - y_pred "
                "(within s * log(2) of pinball, with curvature everywhere)"),
    "hinge": "squared_hinge, or bce_logits for a probabilistic classifier",
    "underestimation": "mse_underestimation (the underestimation penalty plus mse, whose curvature is 2)",
    "huber": "log_cosh (its curvature never vanishes)",
    "tukey": "huber or log_cosh (convex, so their Hessian never turns indefinite)",
    "cauchy": "huber or log_cosh (convex, so their Hessian never turns indefinite)",
}
_GENERIC_ALTERNATIVE = ("a smooth convex loss from the catalog (huber or log_cosh for regression, "
                        "squared_hinge or bce_logits for classification)")


class NewtonNotApplicableError(LossOptionError):
    """Newton's method cannot fit this loss: its Hessian vanishes almost everywhere, or is not
    positive definite at an iterate, or the objective has an L1 term."""


@dataclass(frozen=True)
class Iteration:
    """One iterate: the objective (penalties included), its gradient norm, and the step length t
    taken from it (nan for the last iterate)."""

    loss: float
    grad_norm: float
    step: float


@dataclass(frozen=True, repr=False)
class FitResult:
    """The outcome of `fit_linear`.

    `w` has shape (d,) for one output and (d, k) for k outputs. `history[k]` describes iterate k,
    from the start (k = 0) to the last (k = n_iter), so it has n_iter + 1 entries; the gradient
    norms are those of the free coefficients (all but the reference column, when there is one).
    `reference_class` is the class whose column of w was held at zero (softmax regression without
    l2), else None. `message` says why the iteration stopped.
    """

    w: np.ndarray
    n_iter: int
    converged: bool
    history: tuple[Iteration, ...]
    method: str
    loss_name: str
    message: str
    reference_class: int | None = None

    @property
    def loss(self) -> float:
        """The final objective value, penalties included."""
        return self.history[-1].loss

    @property
    def grad_norm(self) -> float:
        return self.history[-1].grad_norm

    @property
    def losses(self) -> np.ndarray:
        return np.array([it.loss for it in self.history])

    @property
    def grad_norms(self) -> np.ndarray:
        return np.array([it.grad_norm for it in self.history])

    def __repr__(self) -> str:
        state = "converged" if self.converged else "not converged"
        iterations = "iteration" if self.n_iter == 1 else "iterations"
        shape = f"d={self.w.size}" if self.w.ndim == 1 else f"d={self.w.shape[0]}, k={self.w.shape[1]}"
        if self.reference_class is not None:
            shape += f", reference_class={self.reference_class}"
        return (f"FitResult({self.loss_name}, method={self.method!r}, {state} after {self.n_iter} "
                f"{iterations}: loss={self.loss:.10g}, grad_norm={self.grad_norm:.3g}, {shape})")


# ---------------------------------------------------------------------------------------------
# The loss: compiled, built for NumPy, and classified once.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Prepared:
    compiled: CompiledLoss
    module: types.ModuleType
    flat_curvature: bool          # l'' is identically zero off the kinks

    @property
    def kind(self) -> str:
        """'elementwise', 'per_sample' or 'whole_batch' (the module's KIND)."""
        return getattr(self.module, "KIND", "elementwise")

    def domain(self, argument: str) -> str:
        return next(a.domain for a in self.compiled.definition.arguments if a.name == argument)


def _pieces(expr: sympy.Expr) -> list[sympy.Expr]:
    """The branch values of a (possibly nested) Piecewise, or [expr]."""
    expr = sympy.piecewise_fold(expr) if expr.has(sympy.Piecewise) else expr
    if isinstance(expr, sympy.Piecewise):
        return [leaf for value, _ in expr.args for leaf in _pieces(value)]
    return [expr]


def _is_zero(expr: sympy.Expr) -> bool:
    return expr == 0 or sympy.expand(expr) == 0


def curvature_vanishes(compiled: CompiledLoss) -> bool:
    """True when the per-element second derivative l'' is zero on every branch: the loss is
    piecewise linear in its target, and its Hessian X^T diag(l'') X vanishes almost everywhere.
    False when SymPy does not reduce some branch to 0 (the numerical checks then take over)."""
    second = compiled.derivation.hessian[0][0]
    if not isinstance(second, sympy.Expr):
        return False
    return all(_is_zero(leaf) for leaf in _pieces(second))


@functools.lru_cache(maxsize=32)
def _prepare(compiled: CompiledLoss) -> _Prepared:
    return _Prepared(compiled, compiled.build("numpy"), curvature_vanishes(compiled))


@functools.lru_cache(maxsize=32)
def _compile_text(source: str) -> CompiledLoss:
    return compile_loss(source)


def _compiled(loss: CompiledLoss | str) -> CompiledLoss:
    if isinstance(loss, CompiledLoss):
        compiled = loss
    elif isinstance(loss, str):
        compiled = _compile_text(loss)
    else:
        raise LossOptionError(f"fit_linear takes a compiled loss, a catalog name or loss-language text, "
                              f"not {type(loss).__name__}")
    if len(compiled.targets) != 1:
        raise LossOptionError(
            f"fit_linear fits {compiled.targets[0] if compiled.targets else 'a target'} = X @ w for a loss "
            f"with one target; '{compiled.name}' has {len(compiled.targets)} "
            f"({', '.join(compiled.targets)})")
    if compiled.reduction == "none":
        raise LossOptionError(f"fit_linear needs a scalar objective; '{compiled.name}' was compiled with "
                              f"reduction='none': compile it with reduction='mean' or 'sum'")
    return compiled


# ---------------------------------------------------------------------------------------------
# The objective F(w) and its derivatives.
# ---------------------------------------------------------------------------------------------

class _Objective:
    """F(theta) = L(inputs, X @ W) + l1 |theta|_1 + l2 |theta|^2 from the emitted module's loss,
    value_and_grad, hessian and newton_hessian.

    theta is the flat vector of free coefficients: w itself for one output; for k outputs vec(W)
    in the row-major order of W (d, k), without the reference column when there is one (that
    column of W is then zero, so |theta| = |W|)."""

    def __init__(self, prepared: _Prepared, X: np.ndarray, inputs: dict[str, np.ndarray],
                 params: dict[str, float], l1: float, l2: float, k: int | None = None,
                 reference: int | None = None):
        self.mod = prepared.module
        self.kind = prepared.kind
        self.X = X
        self.params = params
        self.l1 = l1
        self.l2 = l2
        self.k = k
        self.reference = reference
        self.target = self.mod.TARGETS[0]
        self.arguments = tuple(self.mod.ARGUMENTS)
        self.others = [inputs[a] for a in self.arguments if a != self.target]
        d = X.shape[1]
        if k is not None and reference is not None:
            self.keep: np.ndarray | None = np.array([j for j in range(k) if j != reference])
            # positions of the free coefficients in vec(W), row-major
            self.free = (np.arange(d)[:, None] * k + self.keep[None, :]).ravel()
        else:
            self.keep = self.free = None

    def _args(self, z: np.ndarray) -> list[np.ndarray]:
        others = iter(self.others)
        return [z if a == self.target else next(others) for a in self.arguments]

    def weights(self, theta: np.ndarray) -> np.ndarray:
        """w (d,) or W (d, k) from the free coefficients."""
        if self.k is None:
            return theta
        d = self.X.shape[1]
        if self.keep is None:
            return theta.reshape(d, self.k)
        W = np.zeros((d, self.k))
        W[:, self.keep] = theta.reshape(d, self.keep.size)
        return W

    def free_coefficients(self, W: np.ndarray) -> np.ndarray:
        """theta from w or W; with a reference column r, W - W[:, r] 1^T first (the same model)."""
        if self.k is None:
            return W
        if self.keep is None:
            return W.ravel()
        return (W - W[:, [self.reference]])[:, self.keep].ravel()

    def penalty(self, w: np.ndarray) -> float:
        return self.l1 * float(np.sum(np.abs(w))) + self.l2 * float(w @ w)

    def smooth(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """The smooth part (loss + l2 term) and its gradient; non-finite values come back as inf."""
        with np.errstate(all="ignore"):     # a trial point outside the domain: rejected below
            value, g = self.mod.value_and_grad(*self._args(self.X @ self.weights(w)), **self.params)
            value = float(value) + self.l2 * float(w @ w)
            G = self.X.T @ np.asarray(g, dtype=np.float64)
            if self.keep is not None:
                G = G[:, self.keep]
            grad = G.ravel() + 2 * self.l2 * w
        if not (math.isfinite(value) and np.all(np.isfinite(grad))):
            return math.inf, grad
        return value, grad

    def hessian(self, w: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            H = np.asarray(self.mod.newton_hessian(self.X, *self.others, self.weights(w), **self.params),
                           dtype=np.float64)
        H = H[np.ix_(self.free, self.free)] if self.free is not None else H.copy()
        H[np.diag_indices_from(H)] += 2 * self.l2
        return H

    def curvature(self, w: np.ndarray) -> np.ndarray:
        """l'' per sample (with the reduction's 1/n), (n,); per sample and output, (n, k), for an
        elementwise loss with k outputs; the Hessian blocks H_i, (n, k, k), of a per-sample loss.
        To explain a failed factorization."""
        with np.errstate(all="ignore"):
            h = np.asarray(self.mod.hessian(*self._args(self.X @ self.weights(w)), **self.params),
                           dtype=np.float64)
        n = self.X.shape[0]
        if self.k is None:
            return np.broadcast_to(h, (n,))
        if self.kind == "per_sample":
            return np.broadcast_to(h, (n, self.k, self.k))
        return np.broadcast_to(h, (n, self.k))


def shift_invariant(module: types.ModuleType, arguments: list[np.ndarray], target: int,
                    params: Mapping[str, float] | None = None) -> bool:
    """True when the per-sample loss does not change if the same constant is added to every output of
    a sample (softmax: log_softmax(z + c) = log_softmax(z)), judged numerically: the rows of every
    per-sample Hessian block H_i sum to zero, at the given target and at a random point near it.
    `arguments` are the module's arguments in order, `target` the index of the (n, k) target."""
    z = np.asarray(arguments[target], dtype=np.float64)
    rng = np.random.default_rng(0)
    for point in (z, z + rng.normal(size=z.shape)):
        args = list(arguments)
        args[target] = point
        with np.errstate(all="ignore"):
            blocks = np.asarray(module.hessian(*args, **dict(params or {})), dtype=np.float64)
        if blocks.ndim != 3 or not np.all(np.isfinite(blocks)):
            return False
        scale = float(np.max(np.abs(blocks))) if blocks.size else 0.0
        if not scale > 0 or float(np.max(np.abs(blocks.sum(axis=-1)))) > 1e-9 * scale:
            return False
    return True


def _min_norm_subgradient(g: np.ndarray, w: np.ndarray, l1: float) -> np.ndarray:
    """The element of grad f + l1 * d|w|_1 of least norm (just g when l1 = 0)."""
    if l1 == 0:
        return g
    at_zero = np.sign(g) * np.maximum(np.abs(g) - l1, 0.0)
    return np.where(w != 0, g + l1 * np.sign(w), at_zero)


def _soft_threshold(v: np.ndarray, t: float) -> np.ndarray:
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


def _accept(f_new: float, bound: float, f: float, norm_new: float, norm: float) -> bool:
    """The sufficient-decrease test f_new <= bound; where f_new and the bound differ by no more than
    the rounding of F (16 eps |F|), F cannot tell a good step from a bad one, and the step is taken
    only if it decreases the gradient norm."""
    if not math.isfinite(f_new):
        return False
    margin = _ROUNDING * abs(f)
    if f_new <= bound - margin:
        return True
    return f_new <= bound + margin and norm_new < norm


# ---------------------------------------------------------------------------------------------
# The progress display.
# ---------------------------------------------------------------------------------------------

class _Progress:
    """Iteration, loss and gradient norm while a fit runs.

    progress=True: on standard error when it is a terminal (a rich progress bar if rich is
    installed, else one line rewritten in place), silent otherwise. progress=<a text stream>: plain
    lines to that stream, whatever it is. Lines are throttled to a few per second, plus the first
    and the last; the bar fills as log(grad norm) goes from its start to log(tol).
    """

    INTERVAL = 0.25

    def __init__(self, progress: bool | TextIO | None, title: str, tol: float):
        self.title = title
        self.tol = tol
        self.stream: TextIO | None = None
        self.rich: Any = None
        self.in_place = False
        self.last = -math.inf
        self.start_norm: float | None = None
        if progress is None or progress is False:
            return
        if progress is True:
            stream = sys.stderr
            if not (hasattr(stream, "isatty") and stream.isatty()):
                return
            try:
                from rich.console import Console
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            except ImportError:
                self.stream, self.in_place = stream, True
                return
            self.rich = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[stats]}"), TimeElapsedColumn(),
                                 console=Console(file=stream), transient=False)
            self.task = self.rich.add_task(title, total=1.0, stats="")
            self.rich.start()
        elif hasattr(progress, "write"):
            self.stream = progress
        else:
            raise LossOptionError(f"progress must be True, False or a text stream, not {progress!r}")

    def _fraction(self, grad_norm: float) -> float:
        if self.start_norm is None:
            self.start_norm = grad_norm
        if not (grad_norm > 0 and self.start_norm > self.tol and math.isfinite(grad_norm)):
            return 1.0 if grad_norm <= self.tol else 0.0
        done = math.log(self.start_norm / grad_norm) / math.log(self.start_norm / self.tol)
        return min(max(done, 0.0), 1.0)

    def update(self, k: int, it: Iteration, final: bool = False) -> None:
        if self.stream is None and self.rich is None:
            return
        fraction = self._fraction(it.grad_norm)
        now = time.perf_counter()
        if not (final or k == 0 or now - self.last >= self.INTERVAL):
            return
        self.last = now
        stats = f"iter {k:>5}  loss {it.loss:.10g}  |grad| {it.grad_norm:.3e}"
        if self.rich is not None:
            self.rich.update(self.task, completed=fraction, stats=stats)
        elif self.in_place:
            self.stream.write(f"\r{self.title}: {stats}")
            self.stream.flush()
        else:
            self.stream.write(f"{self.title}: {stats}\n")

    def close(self, result: FitResult) -> None:
        if self.rich is not None:
            self.rich.stop()
            self.rich.console.print(f"{self.title}: {result.message}", highlight=False, markup=False)
        elif self.stream is not None:
            if self.in_place:
                self.stream.write("\n")
            self.stream.write(f"{self.title}: {result.message}\n")
            self.stream.flush()


# ---------------------------------------------------------------------------------------------
# Newton's method.
# ---------------------------------------------------------------------------------------------

def _cholesky_solve(H: np.ndarray, g: np.ndarray) -> np.ndarray | None:
    """H^{-1} g by a Cholesky factorization, or None when H is not (numerically) positive definite."""
    try:
        from scipy.linalg import cho_factor, cho_solve
    except ImportError:                               # NumPy alone: the factor and two solves by L
        try:
            L = np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            return None
        return np.linalg.solve(L.T, np.linalg.solve(L, g))
    try:
        factor = cho_factor(H, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    return cho_solve(factor, g, check_finite=False)


def _curvature_counts(objective: _Objective, w: np.ndarray) -> tuple[int, int, int, int, str, str]:
    """(non-finite, negative, zero, total, unit, curvature) for the error messages: how many samples
    (or, for an elementwise loss with k outputs, sample-output values) have a non-finite, a negative
    or a zero curvature; what they are called; and what their curvature is called."""
    counts = getattr(objective, "curvature_counts", None)       # data on a cluster: counted there
    return counts(w) if counts is not None else curvature_census(objective.curvature(w))


def curvature_census(h: np.ndarray) -> tuple[int, int, int, int, str, str]:
    """_curvature_counts of the curvature array h: (n,), (n, k) or blocks (n, k, k)."""
    finite = np.isfinite(h)
    if h.ndim == 3:                                           # per-sample blocks H_i
        bad = ~np.all(finite, axis=(1, 2))
        eig = np.linalg.eigvalsh(np.where(finite, h, 0.0))
        scale = max(float(np.max(np.abs(eig))) if eig.size else 0.0, np.finfo(np.float64).tiny)
        negative = ~bad & np.any(eig < -1e-12 * scale, axis=1)
        zero = ~bad & np.all(h == 0, axis=(1, 2))
        return (int(bad.sum()), int(negative.sum()), int(zero.sum()), h.shape[0], "samples",
                "per-sample Hessian block H_i")
    unit = "samples" if h.ndim == 1 else f"(sample, output) values ({h.shape[0]} x {h.shape[1]})"
    return (int(np.sum(~finite)), int(np.sum(h < 0)), int(np.sum(h == 0)), h.size, unit, "l''")


def _not_positive_definite(objective: _Objective, name: str, H: np.ndarray, w: np.ndarray,
                           k: int) -> NewtonNotApplicableError:
    """Why the factorization failed, in terms of the samples' curvature l'' (or blocks H_i)."""
    bad, negative, zero, n, unit, curvature = _curvature_counts(objective, w)
    blocks = curvature != "l''"
    alternative = _ALTERNATIVES.get(name, _GENERIC_ALTERNATIVE)
    if not np.all(np.isfinite(H)):
        what = "is not finite"
        why = f"{curvature} is not finite for {bad} of {n} {unit}"
        hint = "Start inside the loss's domain, closer to the solution (w0=), or use method='gd'."
    else:
        eig = np.linalg.eigvalsh(H)
        scale = max(float(np.max(np.abs(eig))), np.finfo(np.float64).tiny)
        if eig[0] < -1e-12 * scale:
            what = f"is indefinite (eigenvalues from {eig[0]:.3g} to {eig[-1]:.3g})"
            why = (f"{negative} of {n} {unit} have "
                   + ("a block H_i with a negative eigenvalue" if blocks else "negative curvature l'' < 0")
                   + " there: the loss is not convex where the fit is, as a redescending loss is far from "
                     "its minimum")
            hint = (f"Start closer to the solution (w0=, e.g. from a huber fit), use method='gd', "
                    f"or a convex loss: {alternative}.")
        else:
            what = f"is singular (eigenvalues from {eig[0]:.3g} to {eig[-1]:.3g})"
            why = (f"{zero} of {n} {unit} have "
                   + ("a zero Hessian block H_i" if blocks else "zero curvature l'' = 0") + " there"
                   + (", and the others do not determine w (too few, or X has dependent columns)"
                      if zero < n else ""))
            hint = ("Add an L2 penalty (l2 > 0), drop dependent columns of X, start closer to the solution "
                    "(w0=), or use method='gd'." if blocks else
                    f"Add an L2 penalty (l2 > 0), start closer to the solution (w0=), use method='gd', "
                    f"or a loss whose curvature does not vanish: {alternative}.")
    return NewtonNotApplicableError(
        f"Newton's method does not apply to '{name}' at iteration {k}: the Hessian in w {what}; {why}.",
        hint=hint)


def _newton(objective: _Objective, name: str, w: np.ndarray, tol: float, max_iter: int,
            report: _Progress) -> tuple[np.ndarray, list[Iteration], bool, str]:
    f, g = objective.smooth(w)
    if not math.isfinite(f):
        raise LossOptionError(f"the loss '{name}' is not finite at the starting point w0; start inside "
                              f"its domain (a target X @ w0 that every argument domain allows)")
    norm = float(np.linalg.norm(g))
    history: list[Iteration] = []
    for k in range(max_iter + 1):
        if norm <= tol:
            history.append(Iteration(f, norm, math.nan))
            return w, history, True, f"converged: gradient norm {norm:.3g} <= tol {tol:.3g}"
        if k == max_iter:
            history.append(Iteration(f, norm, math.nan))
            return w, history, False, f"stopped after max_iter={max_iter} iterations (gradient norm {norm:.3g})"
        H = objective.hessian(w)
        p = _cholesky_solve(H, -g) if np.all(np.isfinite(H)) else None
        if p is None or not np.all(np.isfinite(p)):
            raise _not_positive_definite(objective, name, H, w, k)
        slope = float(g @ p)
        t = 1.0
        for _ in range(_MAX_HALVINGS):
            f_new, g_new = objective.smooth(w + t * p)
            if _accept(f_new, f + _ARMIJO_C1 * t * slope, f, float(np.linalg.norm(g_new)), norm):
                break
            t *= _SHRINK
        else:
            history.append(Iteration(f, norm, math.nan))
            return w, history, False, (f"line search failed at iteration {k}: no step along the Newton "
                                       f"direction decreases the loss (gradient norm {norm:.3g})")
        history.append(Iteration(f, norm, t))
        report.update(k, history[-1])
        step = t * p
        w = w + step
        f, g, norm = f_new, g_new, float(np.linalg.norm(g_new))
        if np.linalg.norm(step) <= np.finfo(np.float64).eps * (1 + np.linalg.norm(w)) and norm > tol:
            history.append(Iteration(f, norm, math.nan))
            return w, history, False, (f"stalled at iteration {k + 1}: the step is below machine precision "
                                       f"(gradient norm {norm:.3g}, tol {tol:.3g})")
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# (Proximal) gradient descent.
# ---------------------------------------------------------------------------------------------

def _gradient_descent(objective: _Objective, name: str, w: np.ndarray, tol: float, max_iter: int,
                      step_size: float | None, report: _Progress
                      ) -> tuple[np.ndarray, list[Iteration], bool, str]:
    l1 = objective.l1
    f, g = objective.smooth(w)
    if not math.isfinite(f):
        raise LossOptionError(f"the loss '{name}' is not finite at the starting point w0; start inside "
                              f"its domain (a target X @ w0 that every argument domain allows)")
    t = 1.0 if step_size is None else step_size
    history: list[Iteration] = []
    for k in range(max_iter + 1):
        norm = float(np.linalg.norm(_min_norm_subgradient(g, w, l1)))
        total = f + l1 * float(np.sum(np.abs(w)))
        if not math.isfinite(total):
            history.append(Iteration(total, norm, math.nan))
            return w, history, False, f"diverged at iteration {k}: the loss is not finite (step_size too large?)"
        if norm <= tol:
            history.append(Iteration(total, norm, math.nan))
            return w, history, True, f"converged: gradient norm {norm:.3g} <= tol {tol:.3g}"
        if k == max_iter:
            history.append(Iteration(total, norm, math.nan))
            return w, history, False, f"stopped after max_iter={max_iter} iterations (gradient norm {norm:.3g})"
        if step_size is not None:
            w_new = _soft_threshold(w - t * g, t * l1)
            f_new, g_new = objective.smooth(w_new)
        else:
            t *= 2.0                                   # let the step grow back after a short one
            for _ in range(_MAX_HALVINGS):
                w_new = _soft_threshold(w - t * g, t * l1)
                d = w_new - w
                f_new, g_new = objective.smooth(w_new)
                norm_new = float(np.linalg.norm(_min_norm_subgradient(g_new, w_new, l1)))
                if _accept(f_new, f + float(g @ d) + float(d @ d) / (2 * t), f, norm_new, norm):
                    break
                t *= _SHRINK
            else:
                history.append(Iteration(total, norm, math.nan))
                return w, history, False, (f"line search failed at iteration {k}: no step along the "
                                           f"negative gradient decreases the loss (gradient norm {norm:.3g})")
        history.append(Iteration(total, norm, t))
        report.update(k, history[-1])
        w, f, g = w_new, f_new, g_new
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# The public entry point.
# ---------------------------------------------------------------------------------------------

def _array(value: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise LossOptionError(f"{what} must be an array of numbers ({error})") from None
    if not np.all(np.isfinite(array)):
        raise LossOptionError(f"{what} contains a NaN or an infinity")
    return array


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _nonnegative(value: float, what: str) -> float:
    if not _is_real(value) or not math.isfinite(value) or value < 0:
        raise LossOptionError(f"{what} must be a finite number >= 0, not {value!r}")
    return float(value)


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _outputs(prepared: _Prepared, name: str, first: str | None, given: dict[str, Any], n: int,
             classes: int | None, w0: Any, largest: Callable[[], float] | None = None) -> tuple[int | None, str]:
    """The number of outputs k of the model (None for one output, w of shape (d,)), and how it was
    found. `first` is the loss's first argument besides the target (the labels), `given` its inputs;
    `largest`, if given, computes the largest label (for labels that are not in memory)."""
    if classes is not None:
        if not (_integer(classes) and classes >= 1):
            raise LossOptionError(f"classes must be an integer >= 1, not {classes!r}")
        return int(classes), "classes="
    kind = prepared.kind
    labels = None if first is None else given[first] if largest is not None else np.asarray(given[first])
    domain = None if first is None else prepared.domain(first)
    if kind == "per_sample" and domain == "index":
        if largest is not None:
            return int(largest()) + 1, f"the largest label of {first} plus one"
        values = _array(labels, first)
        if values.size == 0:
            raise LossOptionError(f"{first} holds no labels; pass classes= for the number of classes")
        return int(np.max(values)) + 1, f"the largest label of {first} plus one"
    if labels is not None and labels.ndim == 2 and (labels.shape[1] > 1 or kind == "per_sample"):
        return int(labels.shape[1]), f"the columns of {first}"
    if kind == "per_sample":
        if w0 is not None and np.ndim(w0) == 2:
            return int(np.shape(w0)[1]), "the columns of w0"
        raise LossOptionError(
            f"'{name}' reduces over the outputs of each sample, so the model has k outputs, X @ W with W "
            f"of shape (d, k); say how many: {first or 'the labels'} of shape ({n}, k), or classes=k")
    return None, ""


def _labels(value: np.ndarray, key: str, k: int) -> np.ndarray:
    """Class indices: integers in [0, k)."""
    if np.any(value != np.round(value)) or (value.size and (value.min() < 0 or value.max() >= k)):
        bad = value[(value != np.round(value)) | (value < 0) | (value >= k)]
        raise LossOptionError(f"{key} holds class indices, integers from 0 to {k - 1} for {k} classes; "
                              f"it has {float(bad.flat[0]):g}" + (" (pass classes= for more classes)"
                                                                  if bad.flat[0] >= k else ""))
    return value


def fit_linear(loss: CompiledLoss | str, X: Any, y: Any = None, method: str = "newton", *,
               params: Mapping[str, float] | None = None, inputs: Mapping[str, Any] | None = None,
               l1: float = 0.0, l2: float = 0.0, w0: Any = None, tol: float = 1e-8,
               max_iter: int | None = None, step_size: float | None = None,
               classes: int | None = None, reference_class: int | None = None,
               progress: bool | TextIO = False) -> FitResult:
    """Fit the linear model `target = X @ w` by minimizing the loss plus l1 |w|_1 + l2 |w|^2.

    Args:
        loss: a `CompiledLoss` (reduction 'mean' or 'sum'), a catalog name, or loss-language text
            (compiled with reduction='mean'). It must have one target, the model's output.
        X: (n, d) design matrix; add a column of ones for an intercept (which is then penalized too).
        y: the loss's first argument other than the target (labels, counts, responses): (n,) for one
            output; for k outputs (n, k) rows (simplex, onehot, or an elementwise loss's k targets)
            or (n,) class indices (an `index` argument, as in sparse_softmax_ce).
        method: 'newton' (damped Newton, Cholesky solve, Armijo backtracking) or 'gd' (proximal
            gradient; backtracking unless `step_size` is given).
        params: the loss's parameters by name (huber's delta, ...), passed at run time.
        inputs: any further arguments of the loss by name, each (n,) or a scalar ((n, 1) or (n, k)
            with k outputs).
        l1, l2: penalties l1 * sum |w_j| + l2 * sum w_j^2 (the seed's regularized_loss; elastic net
            is l1 = alpha * l1_ratio, l2 = alpha * (1 - l1_ratio)). Newton refuses l1 > 0.
        w0: starting coefficients, (d,) or (d, k) (default zeros).
        tol: stop when the gradient norm (with l1: the minimum-norm subgradient's) is at most tol.
        max_iter: iteration limit (default 100 for Newton, 10000 for gradient descent).
        step_size: a fixed gradient-descent step (no line search); gd only.
        classes: the number of outputs k, for class indices when the largest class has no sample.
        reference_class: for a loss invariant to a common shift of the k outputs (softmax
            regression), the class whose column of W is held at zero. By default class 0 when
            l2 = 0 (the unpenalized Hessian is singular along the shift), none when l2 > 0.
        progress: True for a progress display on a terminal (rich if installed), or a text stream.

    Returns a `FitResult` with w ((d,), or (d, k) for k outputs), n_iter, converged, history (loss
    and gradient norm per iterate) and a message. Raises `NewtonNotApplicableError` when Newton's
    method does not apply.
    """
    if method not in METHODS:
        raise LossOptionError(f"unknown method '{method}'{did_you_mean(str(method), METHODS)}; "
                              f"choose one of {', '.join(METHODS)}")
    compiled = _compiled(loss)
    name = compiled.name
    l1 = _nonnegative(l1, "l1")
    l2 = _nonnegative(l2, "l2")
    if not (_is_real(tol) and tol > 0):
        raise LossOptionError(f"tol must be a number > 0, not {tol!r}")
    if max_iter is None:
        max_iter = 100 if method == "newton" else 10_000
    if not (_integer(max_iter) and max_iter >= 0):
        raise LossOptionError(f"max_iter must be an integer >= 0, not {max_iter!r}")
    if step_size is not None:
        if method != "gd":
            raise LossOptionError("step_size is the fixed step of method='gd'; Newton's step comes from "
                                  "its line search")
        if not (_is_real(step_size) and math.isfinite(step_size) and step_size > 0):
            raise LossOptionError(f"step_size must be a finite number > 0, not {step_size!r}")
    if reference_class is not None and not (_integer(reference_class) and reference_class >= 0):
        raise LossOptionError(f"reference_class must be a class index >= 0, not {reference_class!r}")

    prepared = _prepare(compiled)
    if method == "newton":
        if l1 > 0:
            raise NewtonNotApplicableError(
                f"Newton's method does not apply with an L1 penalty (l1={l1:g}): |w| has no second "
                f"derivative at 0, where the zeros of an L1 solution sit",
                hint="Use method='gd' (proximal gradient, exact zeros), or l1=0 with an L2 penalty (l2 > 0).")
        if prepared.kind == "whole_batch" or not hasattr(prepared.module, "newton_hessian"):
            raise NewtonNotApplicableError(
                f"Newton's method does not apply to '{name}': a reduction spans the whole batch "
                f"(axis=all), so the loss is not a sum of per-sample terms and its Hessian in w is not "
                f"sum_i x_i x_i^T (x) H_i; the generated module has no newton_hessian for it",
                hint=f"Use method='gd' for '{name}', or a loss that reduces per sample.")
        if prepared.flat_curvature:
            raise NewtonNotApplicableError(
                f"Newton's method does not apply to '{name}': its second derivative in "
                f"{compiled.targets[0]} is zero everywhere but at its kinks (l'' = "
                f"{_display_hessian(compiled)}), so the Hessian X^T diag(l'') X vanishes almost everywhere "
                f"and gives no Newton step",
                hint=f"Use a smooth loss instead: {_ALTERNATIVES.get(name, _GENERIC_ALTERNATIVE)}; "
                     f"or fit '{name}' itself with method='gd'.")

    if _is_dask(X, y, inputs):                        # losscomp.fit_dask, a later stage, loaded on first use
        return importlib.import_module("losscomp.fit_dask").fit(
            prepared, name, X, y, method=method, params=params, inputs=inputs, l1=l1, l2=l2, w0=w0, tol=tol,
            max_iter=max_iter, step_size=step_size, classes=classes, reference_class=reference_class,
            progress=progress)

    X = _array(X, "X")
    if X.ndim != 2:
        raise LossOptionError(f"X must be a 2-D array (n samples, d features), not of shape {X.shape}")
    n, d = X.shape
    mod = prepared.module
    target = mod.TARGETS[0]
    others = [a for a in mod.ARGUMENTS if a != target]
    given = _given(prepared, name, y, inputs)

    k, source = _outputs(prepared, name, others[0] if others else None, given, n, classes, w0)
    data: dict[str, np.ndarray] = {}
    for key in others:
        value = _conform(prepared, key, _array(given[key], key), key == others[0], n, k, source)
        if k is not None and prepared.domain(key) == "index":
            value = _labels(value, key, k)
        data[key] = value

    values = _parameters(mod, name, params)

    def objective_for(reference: int | None) -> _Objective:
        return _Objective(prepared, X, data, values, l1, l2, k, reference)

    def invariant(W: np.ndarray) -> bool:
        arguments = [X @ W if a == target else data[a] for a in mod.ARGUMENTS]
        return shift_invariant(mod, arguments, mod.ARGUMENTS.index(target), values)

    return _solve(prepared, name, method, objective_for, invariant, d, k, source, l2, w0, tol, max_iter,
                  step_size, reference_class, progress)


def _given(prepared: _Prepared, name: str, y: Any, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The loss's arguments besides the target, by name: y is the first, `inputs` the others."""
    mod = prepared.module
    target = mod.TARGETS[0]
    others = [a for a in mod.ARGUMENTS if a != target]
    given = dict(inputs or {})
    for key in given:
        if key not in others:
            raise LossNameError(f"'{key}' is not an input of '{name}'{did_you_mean(key, others)} "
                                f"(its inputs besides the target {target}: {', '.join(others) or 'none'})")
    if others:
        if y is not None:
            if others[0] in given:
                raise LossOptionError(f"'{others[0]}' is given twice: as y and in inputs")
            given[others[0]] = y
        missing = [a for a in others if a not in given]
        if missing:
            raise LossOptionError(f"'{name}' needs {', '.join(missing)} besides X (its arguments: "
                                  f"{', '.join(mod.ARGUMENTS)}; the target {target} is X @ w)")
    elif y is not None:
        raise LossOptionError(f"'{name}' has no argument besides its target {target}; pass y=None")
    return given


def _conform(prepared: _Prepared, key: str, value: Any, first: bool, n: int, k: int | None, source: str) -> Any:
    """An input array (NumPy or Dask) in the shape the objective takes, or a clear error: (n,) or a
    scalar for one output; for k outputs (n,) class indices, or (n, k) rows for the first input (the
    labels) and (n, 1), (n, k) or a scalar for the others."""
    if k is None:
        if value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        if value.shape not in ((), (n,)):
            raise LossOptionError(f"{key} must have shape ({n},) to match X, not {value.shape}")
    elif prepared.domain(key) == "index":
        if value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        if value.shape not in ((), (n,)):
            raise LossOptionError(f"{key} holds class indices, shape ({n},), not {value.shape}")
    else:
        if first and value.shape != (n, k):
            raise LossOptionError(f"{key} must have shape ({n}, {k}) for a model with {k} outputs "
                                  f"(k from {source}), not {value.shape}")
        if value.ndim == 1 and value.shape == (n,):
            value = value[:, None]                  # one value per sample, for every output
        if value.shape not in ((), (n, 1), (n, k)):
            raise LossOptionError(f"{key} must have shape ({n},), ({n}, 1) or ({n}, {k}) for a model "
                                  f"with {k} outputs, not {value.shape}")
    return value


def _parameters(mod: types.ModuleType, name: str, params: Mapping[str, float] | None) -> dict[str, float]:
    """The loss parameters given to fit_linear, checked against the module's."""
    values = dict(params or {})
    known = dict(mod.PARAMETERS)
    for key, value in values.items():
        if key not in known:
            raise LossNameError(f"'{name}' has no parameter '{key}'{did_you_mean(key, known)} "
                                f"(its parameters: {', '.join(known) or 'none'})")
        if not _is_real(value) or not math.isfinite(value):
            raise LossOptionError(f"parameter '{key}' must be a finite number, not {value!r}")
    return values


def _solve(prepared: _Prepared, name: str, method: str, objective_for: Callable[[int | None], _Objective],
           invariant: Callable[[np.ndarray], bool], d: int, k: int | None, source: str, l2: float, w0: Any,
           tol: float, max_iter: int, step_size: float | None, reference_class: int | None,
           progress: bool | TextIO) -> FitResult:
    """The starting point, the reference class, and the iteration, for data in memory or on a cluster:
    `objective_for(reference)` builds the objective, `invariant(W)` says whether the loss is unchanged
    by a common shift of the k outputs at the target X @ W."""
    shape = (d,) if k is None else (d, k)
    W = np.zeros(shape) if w0 is None else _array(w0, "w0").copy()
    if W.shape != shape:
        raise LossOptionError(f"w0 must have shape {shape} to match X" + (f" and k = {k} outputs (k from "
                              f"{source})" if k is not None else "") + f", not {W.shape}")

    # softmax regression: the Hessian is singular along W -> W + v 1^T unless l2 > 0 or a column is fixed
    reference = None
    if k is not None and prepared.kind == "per_sample":
        shift_free = invariant(W)
        if reference_class is not None:
            if not shift_free:
                raise LossOptionError(
                    f"reference_class applies to a loss that does not change when the same constant is "
                    f"added to all k outputs of a sample (softmax regression); '{name}' changes, so every "
                    f"column of W matters: leave reference_class out")
            if reference_class >= k:
                raise LossOptionError(f"reference_class={reference_class} is not one of the {k} classes "
                                      f"(0 to {k - 1})")
            reference = int(reference_class)
        elif shift_free and l2 == 0:
            reference = 0
    elif reference_class is not None:
        raise LossOptionError(
            f"reference_class applies to softmax regression (a per-sample loss invariant to shifting all k "
            f"outputs); '{name}' " + ("has one output" if k is None else "is elementwise in its outputs"))

    objective = objective_for(reference)
    theta = objective.free_coefficients(W)
    report = _Progress(progress, f"fit {name} ({method})", tol)
    if method == "newton":
        theta, history, converged, message = _newton(objective, name, theta, tol, max_iter, report)
    else:
        theta, history, converged, message = _gradient_descent(objective, name, theta, tol, max_iter,
                                                               step_size, report)
    if reference is not None:
        message += f"; W[:, {reference}] = 0 (reference class)"
    result = FitResult(w=objective.weights(theta), n_iter=len(history) - 1, converged=converged,
                       history=tuple(history), method=method, loss_name=name, message=message,
                       reference_class=reference)
    report.update(result.n_iter, history[-1], final=True)
    report.close(result)
    return result


def _is_dask(*values: Any) -> bool:
    """True when any value (or any value of a mapping among them) is a Dask collection."""
    dask = sys.modules.get("dask")
    if dask is None:                      # never imported: nothing here can be a Dask array
        return False
    for value in values:
        items = value.values() if isinstance(value, Mapping) else (value,)
        if any(dask.is_dask_collection(item) for item in items):
            return True
    return False


def _display_hessian(compiled: CompiledLoss) -> str:
    """l'' in plain text, with the `where` names put back."""
    return str(compiled.plain()["hessian"][0][0])
