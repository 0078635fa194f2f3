"""Fitting a linear model `target = X @ w` under a compiled loss: damped Newton with the generated
Hessian, or (proximal) gradient descent.

The objective is the reduced loss plus the seed's `regularized_loss` penalties,

    F(w) = L(y, X @ w) + l1 * sum |w_j| + l2 * sum w_j^2

(elastic net with `alpha` and `l1_ratio` is l1 = alpha * l1_ratio, l2 = alpha * (1 - l1_ratio)), and
its derivatives are assembled from the emitted NumPy module, with the penalties added analytically:

    grad F = X^T grad(y, X @ w) + 2 l2 w (+ l1 sign(w))
    hess F = newton_hessian(X, y, w) + 2 l2 I              (= X^T diag(l'') X / n + 2 l2 I)

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
  Newton method would need an inner solver). Use `method="gd"`, which handles l1 exactly.

Gradient descent (`method="gd"`) is proximal gradient (ISTA): w+ = soft_threshold(w - t g, t l1),
with a fixed `step_size`, or by default backtracking on the sufficient-decrease test of Beck and
Teboulle (2009), f(w+) <= f(w) + g . (w+ - w) + |w+ - w|^2 / (2t), starting each search from twice
the last accepted step. Without l1 this is gradient descent with Armijo backtracking (c1 = 1/2).

Both stop when the gradient norm is at most `tol` (with l1 > 0: the norm of the minimum-norm
subgradient, zero exactly at the optimum). Close to the optimum the decrease a step must show falls
below the rounding of F; within that margin (16 machine epsilons times |F|) a step is taken only if
it reduces the gradient norm, so that the last, quadratically convergent Newton steps still go
through while a gradient step that is too long is still caught.
"""

from __future__ import annotations

import functools
import math
import numbers
import sys
import time
import types
from dataclasses import dataclass
from typing import Any, Mapping, TextIO

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

    `history[k]` describes iterate k, from the start (k = 0) to the last (k = n_iter), so it has
    n_iter + 1 entries; `message` says why the iteration stopped.
    """

    w: np.ndarray
    n_iter: int
    converged: bool
    history: tuple[Iteration, ...]
    method: str
    loss_name: str
    message: str

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
        return (f"FitResult({self.loss_name}, method={self.method!r}, {state} after {self.n_iter} "
                f"{iterations}: loss={self.loss:.10g}, grad_norm={self.grad_norm:.3g}, d={self.w.size})")


# ---------------------------------------------------------------------------------------------
# The loss: compiled, built for NumPy, and classified once.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Prepared:
    compiled: CompiledLoss
    module: types.ModuleType
    flat_curvature: bool          # l'' is identically zero off the kinks


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
    """F(w) = L(inputs, X @ w) + l1 |w|_1 + l2 |w|^2 from the emitted module's loss, value_and_grad,
    hessian and newton_hessian."""

    def __init__(self, prepared: _Prepared, X: np.ndarray, inputs: dict[str, np.ndarray],
                 params: dict[str, float], l1: float, l2: float):
        self.mod = prepared.module
        self.X = X
        self.params = params
        self.l1 = l1
        self.l2 = l2
        self.target = self.mod.TARGETS[0]
        self.arguments = tuple(self.mod.ARGUMENTS)
        self.others = [inputs[a] for a in self.arguments if a != self.target]

    def _args(self, z: np.ndarray) -> list[np.ndarray]:
        others = iter(self.others)
        return [z if a == self.target else next(others) for a in self.arguments]

    def penalty(self, w: np.ndarray) -> float:
        return self.l1 * float(np.sum(np.abs(w))) + self.l2 * float(w @ w)

    def smooth(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        """The smooth part (loss + l2 term) and its gradient; non-finite values come back as inf."""
        with np.errstate(all="ignore"):     # a trial point outside the domain: rejected below
            value, g = self.mod.value_and_grad(*self._args(self.X @ w), **self.params)
            value = float(value) + self.l2 * float(w @ w)
            grad = self.X.T @ np.asarray(g, dtype=np.float64) + 2 * self.l2 * w
        if not (math.isfinite(value) and np.all(np.isfinite(grad))):
            return math.inf, grad
        return value, grad

    def hessian(self, w: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            H = np.array(self.mod.newton_hessian(self.X, *self.others, w, **self.params), dtype=np.float64)
        H[np.diag_indices_from(H)] += 2 * self.l2
        return H

    def curvature(self, w: np.ndarray) -> np.ndarray:
        """l'' per sample (with the reduction's 1/n), to explain a failed factorization."""
        with np.errstate(all="ignore"):
            h = self.mod.hessian(*self._args(self.X @ w), **self.params)
        return np.broadcast_to(np.asarray(h, dtype=np.float64), (self.X.shape[0],))


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


def _not_positive_definite(objective: _Objective, name: str, H: np.ndarray, w: np.ndarray,
                           k: int) -> NewtonNotApplicableError:
    """Why the factorization failed, in terms of the samples' curvature l''."""
    h = objective.curvature(w)
    n = h.size
    alternative = _ALTERNATIVES.get(name, _GENERIC_ALTERNATIVE)
    if not np.all(np.isfinite(H)):
        what = "is not finite"
        why = f"l'' is not finite for {int(np.sum(~np.isfinite(h)))} of {n} samples"
        hint = "Start inside the loss's domain, closer to the solution (w0=), or use method='gd'."
    else:
        eig = np.linalg.eigvalsh(H)
        scale = max(float(np.max(np.abs(eig))), np.finfo(np.float64).tiny)
        if eig[0] < -1e-12 * scale:
            what = f"is indefinite (eigenvalues from {eig[0]:.3g} to {eig[-1]:.3g})"
            why = (f"{int(np.sum(h < 0))} of {n} samples have negative curvature l'' < 0 there: the loss "
                   f"is not convex where the fit is, as a redescending loss is far from its minimum")
            hint = (f"Start closer to the solution (w0=, e.g. from a huber fit), use method='gd', "
                    f"or a convex loss: {alternative}.")
        else:
            zero = int(np.sum(h == 0))
            what = f"is singular (eigenvalues from {eig[0]:.3g} to {eig[-1]:.3g})"
            why = (f"{zero} of {n} samples have zero curvature l'' = 0 there"
                   + (", and the others do not determine w (too few, or X has dependent columns)"
                      if zero < n else ""))
            hint = (f"Add an L2 penalty (l2 > 0), start closer to the solution (w0=), use method='gd', "
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


def fit_linear(loss: CompiledLoss | str, X: Any, y: Any = None, method: str = "newton", *,
               params: Mapping[str, float] | None = None, inputs: Mapping[str, Any] | None = None,
               l1: float = 0.0, l2: float = 0.0, w0: Any = None, tol: float = 1e-8,
               max_iter: int | None = None, step_size: float | None = None,
               progress: bool | TextIO = False) -> FitResult:
    """Fit the linear model `target = X @ w` by minimizing the loss plus l1 |w|_1 + l2 |w|^2.

    Args:
        loss: a `CompiledLoss` (reduction 'mean' or 'sum'), a catalog name, or loss-language text
            (compiled with reduction='mean'). It must have one target, the model's output.
        X: (n, d) design matrix; add a column of ones for an intercept (which is then penalized too).
        y: (n,) the loss's first argument other than the target (labels, counts, responses).
        method: 'newton' (damped Newton, Cholesky solve, Armijo backtracking) or 'gd' (proximal
            gradient; backtracking unless `step_size` is given).
        params: the loss's parameters by name (huber's delta, ...), passed at run time.
        inputs: any further arguments of the loss by name, each (n,) or a scalar.
        l1, l2: penalties l1 * sum |w_j| + l2 * sum w_j^2 (the seed's regularized_loss; elastic net
            is l1 = alpha * l1_ratio, l2 = alpha * (1 - l1_ratio)). Newton refuses l1 > 0.
        w0: starting coefficients (default zeros).
        tol: stop when the gradient norm (with l1: the minimum-norm subgradient's) is at most tol.
        max_iter: iteration limit (default 100 for Newton, 10000 for gradient descent).
        step_size: a fixed gradient-descent step (no line search); gd only.
        progress: True for a progress display on a terminal (rich if installed), or a text stream.

    Returns a `FitResult` with w, n_iter, converged, history (loss and gradient norm per iterate)
    and a message. Raises `NewtonNotApplicableError` when Newton's method does not apply.
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
    if not (isinstance(max_iter, numbers.Integral) and not isinstance(max_iter, bool) and max_iter >= 0):
        raise LossOptionError(f"max_iter must be an integer >= 0, not {max_iter!r}")
    if step_size is not None:
        if method != "gd":
            raise LossOptionError("step_size is the fixed step of method='gd'; Newton's step comes from "
                                  "its line search")
        if not (_is_real(step_size) and math.isfinite(step_size) and step_size > 0):
            raise LossOptionError(f"step_size must be a finite number > 0, not {step_size!r}")

    prepared = _prepare(compiled)
    if method == "newton":
        if l1 > 0:
            raise NewtonNotApplicableError(
                f"Newton's method does not apply with an L1 penalty (l1={l1:g}): |w| has no second "
                f"derivative at 0, where the zeros of an L1 solution sit",
                hint="Use method='gd' (proximal gradient, exact zeros), or l1=0 with an L2 penalty (l2 > 0).")
        if prepared.flat_curvature:
            raise NewtonNotApplicableError(
                f"Newton's method does not apply to '{name}': its second derivative in "
                f"{compiled.targets[0]} is zero everywhere but at its kinks (l'' = "
                f"{_display_hessian(compiled)}), so the Hessian X^T diag(l'') X vanishes almost everywhere "
                f"and gives no Newton step",
                hint=f"Use a smooth loss instead: {_ALTERNATIVES.get(name, _GENERIC_ALTERNATIVE)}; "
                     f"or fit '{name}' itself with method='gd'.")

    X = _array(X, "X")
    if X.ndim != 2:
        raise LossOptionError(f"X must be a 2-D array (n samples, d features), not of shape {X.shape}")
    n, d = X.shape
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
    data: dict[str, np.ndarray] = {}
    for key in others:
        value = _array(given[key], key)
        if value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        if value.shape not in ((), (n,)):
            raise LossOptionError(f"{key} must have shape ({n},) to match X, not {value.shape}")
        data[key] = value

    values = dict(params or {})
    known = dict(mod.PARAMETERS)
    for key, value in values.items():
        if key not in known:
            raise LossNameError(f"'{name}' has no parameter '{key}'{did_you_mean(key, known)} "
                                f"(its parameters: {', '.join(known) or 'none'})")
        if not _is_real(value) or not math.isfinite(value):
            raise LossOptionError(f"parameter '{key}' must be a finite number, not {value!r}")

    w = np.zeros(d) if w0 is None else _array(w0, "w0").copy()
    if w.shape != (d,):
        raise LossOptionError(f"w0 must have shape ({d},) to match X, not {w.shape}")

    objective = _Objective(prepared, X, data, values, l1, l2)
    report = _Progress(progress, f"fit {name} ({method})", tol)
    if method == "newton":
        w, history, converged, message = _newton(objective, name, w, tol, max_iter, report)
    else:
        w, history, converged, message = _gradient_descent(objective, name, w, tol, max_iter, step_size,
                                                           report)
    result = FitResult(w=w, n_iter=len(history) - 1, converged=converged, history=tuple(history),
                       method=method, loss_name=name, message=message)
    report.update(result.n_iter, history[-1], final=True)
    report.close(result)
    return result


def _display_hessian(compiled: CompiledLoss) -> str:
    """l'' in plain text, with the `where` names put back."""
    return str(compiled.plain()["hessian"][0][0])
