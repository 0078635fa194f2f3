"""fit_linear on Dask arrays: the data stay in row chunks on the workers, the iteration on the client.

`fit_linear(loss, X, y)` with X a Dask array of shape (n, d), chunked by rows, and y (and any
`inputs`) chunked the same way (NumPy arrays are chunked like X; scalars are sent as they are) runs
the same damped Newton method (or proximal gradient descent) as in memory: the same objective, the
same Cholesky solve and Armijo line search, the same stopping rule (`losscomp.fit._newton`,
`_gradient_descent`). Only the sums over samples move to the workers. For row chunk c,

    value_c = sum_i l(y_i, x_i^T w)               (the emitted NumPy module, reduction='sum')
    G_c     = X_c^T grad(y_c, X_c w)              (d,), or (d, k) for k outputs
    H_c     = newton_hessian(X_c, y_c, w)         = X_c^T diag(l'') X_c, (d, d) or (d k, d k)

are computed where the chunk is, summed in a tree (groups of `_FAN_IN`), and only the sums, of
size O(d^2 k^2), reach the client, which divides by the number of loss values for reduction='mean',
adds the penalty and solves the small system. No task ever holds more than one chunk of X.

Scheduler: the current `distributed.Client` if there is one (any cluster the user connected to);
else, with `distributed` installed, a `LocalCluster` of threads started for the fit and closed after
it; else Dask's default scheduler. On a distributed cluster X and the inputs are persisted (kept in
the workers' memory, spread over them) for the fit, so that an X built lazily (read from files,
generated) is computed once, not at every pass.

Each chunk is cast to float64 on its worker, so X may be stored as float32 (half the memory).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import types
from typing import Any, Callable, Iterator, Mapping, TextIO

import numpy as np

from . import runtime
from .errors import LossOptionError
from .fit import (
    FitResult,
    _conform,
    _given,
    _labels,
    _Objective,
    _outputs,
    _parameters,
    _Prepared,
    _solve,
    curvature_census,
    shift_invariant,
)

_FAN_IN = 8                     # partial sums added per task of the tree reduction


# ---------------------------------------------------------------------------------------------
# Worker side: the emitted module from its source, and the per-chunk terms.
# ---------------------------------------------------------------------------------------------

_MODULES: dict[str, types.ModuleType] = {}
_LOADING = threading.Lock()


def _module(source: str) -> types.ModuleType:
    """The emitted module of `source`, loaded once per process (workers receive the source text)."""
    key = hashlib.sha256(source.encode()).hexdigest()
    with _LOADING:
        module = _MODULES.get(key)
        if module is None:
            module = _MODULES[key] = runtime.load(source, "fit_chunk")
    return module


def _arguments(module: types.ModuleType, X: np.ndarray, others: tuple, W: np.ndarray) -> list:
    others_iter = iter(others)
    target = module.TARGETS[0]
    return [X @ W if a == target else next(others_iter) for a in module.ARGUMENTS]


def _chunk(X: Any, others: tuple) -> tuple[np.ndarray, tuple]:
    return np.asarray(X, dtype=np.float64), tuple(np.asarray(o, dtype=np.float64) for o in others)


def _value_and_gradient(source: str, params: dict, W: np.ndarray, X: Any, *others: Any) -> tuple:
    """(sum of the chunk's losses, X_c^T grad) with the module compiled for reduction='sum'."""
    module = _module(source)
    X, others = _chunk(X, others)
    with np.errstate(all="ignore"):
        value, g = module.value_and_grad(*_arguments(module, X, others, W), **params)
        return float(value), X.T @ np.asarray(g, dtype=np.float64)


def _newton_hessian(source: str, params: dict, W: np.ndarray, X: Any, *others: Any) -> np.ndarray:
    """X_c^T diag(l'') X_c (with blocks for k outputs): the module's newton_hessian on the chunk."""
    module = _module(source)
    X, others = _chunk(X, others)
    with np.errstate(all="ignore"):
        return np.asarray(module.newton_hessian(X, *others, W, **params), dtype=np.float64)


def _curvature_counts(source: str, params: dict, kind: str, k: int | None, W: np.ndarray, X: Any,
                      *others: Any) -> np.ndarray:
    """(non-finite, negative, zero, total) curvature counts of the chunk, as in the in-memory fit."""
    module = _module(source)
    X, others = _chunk(X, others)
    with np.errstate(all="ignore"):
        h = np.asarray(module.hessian(*_arguments(module, X, others, W), **params), dtype=np.float64)
    n = X.shape[0]
    shape = (n,) if k is None else (n, k, k) if kind == "per_sample" else (n, k)
    return np.array(curvature_census(np.broadcast_to(h, shape))[:4], dtype=np.int64)


def _shift_invariant(source: str, params: dict, W: np.ndarray, X: Any, *others: Any) -> bool:
    module = _module(source)
    X, others = _chunk(X, others)
    arguments = _arguments(module, X, others, W)
    return shift_invariant(module, arguments, module.ARGUMENTS.index(module.TARGETS[0]), params)


def _add(*parts: Any) -> Any:
    """The sum of partial results: numbers, arrays, or tuples of them, term by term."""
    if isinstance(parts[0], tuple):
        return tuple(_add(*terms) for terms in zip(*parts))
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


# ---------------------------------------------------------------------------------------------
# Client side.
# ---------------------------------------------------------------------------------------------

class _Chunks:
    """The row chunks of X and of the inputs as Delayed objects, and how to map a function over them
    and sum the results in a tree on the cluster."""

    def __init__(self, X: Any, data: Mapping[str, Any], arguments: tuple[str, ...], target: str,
                 source: str, params: dict, client: Any):
        import dask

        self.client = client
        self.blocks = list(X.to_delayed().ravel())
        self.others: list[list[Any]] = []
        for name in arguments:
            if name == target:
                continue
            value = data[name]
            if dask.is_dask_collection(value):
                self.others.append(list(value.to_delayed().ravel()))
            else:
                self.others.append([value] * len(self.blocks))
        self.source = dask.delayed(source, pure=True)     # one key, sent once to each worker
        self.params = params

    def graph(self, function: Callable, W: np.ndarray, *leading: Any) -> Any:
        """The Delayed sum over chunks of function(source, params, *leading, W, X_c, *others_c)."""
        import dask

        weights = dask.delayed(np.asarray(W, dtype=np.float64), pure=True)
        parts = [dask.delayed(function, pure=True)(self.source, self.params, *leading, weights, block,
                                                  *(column[c] for column in self.others))
                 for c, block in enumerate(self.blocks)]
        while len(parts) > 1:
            parts = [dask.delayed(_add, pure=True)(*parts[i:i + _FAN_IN]) if len(parts[i:i + _FAN_IN]) > 1
                     else parts[i] for i in range(0, len(parts), _FAN_IN)]
        return parts[0]

    def compute(self, function: Callable, W: np.ndarray, *leading: Any) -> Any:
        total = self.graph(function, W, *leading)
        if self.client is not None:
            return self.client.compute(total).result()
        return total.compute()

    def first(self, function: Callable, W: np.ndarray) -> Any:
        """function on the first chunk only, on a worker."""
        import dask

        call = dask.delayed(function, pure=True)(self.source, self.params, np.asarray(W, dtype=np.float64),
                                                 self.blocks[0], *(column[0] for column in self.others))
        return self.client.compute(call).result() if self.client is not None else call.compute()


class _DaskObjective(_Objective):
    """The in-memory `_Objective` with its sums over samples computed chunk by chunk on the cluster."""

    def __init__(self, prepared: _Prepared, X: Any, data: dict[str, Any], params: dict[str, float], l1: float,
                 l2: float, k: int | None, reference: int | None, chunks: _Chunks, count: int):
        super().__init__(prepared, X, data, params, l1, l2, k, reference)
        self.chunks = chunks
        self.scale = 1.0 / count if prepared.compiled.reduction == "mean" else 1.0
        self.n = X.shape[0]

    def smooth(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        value, G = self.chunks.compute(_value_and_gradient, self.weights(w))
        value = value * self.scale + self.l2 * float(w @ w)
        G = G * self.scale
        if self.keep is not None:
            G = G[:, self.keep]
        grad = G.ravel() + 2 * self.l2 * w
        if not (math.isfinite(value) and np.all(np.isfinite(grad))):
            return math.inf, grad
        return value, grad

    def hessian(self, w: np.ndarray) -> np.ndarray:
        H = self.chunks.compute(_newton_hessian, self.weights(w)) * self.scale
        H = H[np.ix_(self.free, self.free)] if self.free is not None else H.copy()
        H[np.diag_indices_from(H)] += 2 * self.l2
        return H

    def curvature_counts(self, w: np.ndarray) -> tuple[int, int, int, int, str, str]:
        bad, negative, zero, total = (int(c) for c in self.chunks.compute(
            _curvature_counts, self.weights(w), self.kind, self.k))
        if self.k is not None and self.kind == "per_sample":
            return bad, negative, zero, total, "samples", "per-sample Hessian block H_i"
        unit = "samples" if self.k is None else f"(sample, output) values ({self.n} x {self.k})"
        return bad, negative, zero, total, unit, "l''"


@contextlib.contextmanager
def _scheduler() -> Iterator[Any]:
    """The current distributed Client; else a LocalCluster (threads) for the fit; else None (Dask's
    default scheduler, when distributed is not installed)."""
    try:
        import distributed
    except ImportError:
        yield None
        return
    try:
        yield distributed.get_client()
        return
    except ValueError:                                   # no client: start one for this fit
        pass
    with distributed.LocalCluster(processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


def _dask_array(value: Any, what: str) -> Any:
    import dask.array as da

    if not isinstance(value, da.Array):
        raise LossOptionError(f"{what} is a Dask collection but not a Dask array ({type(value).__name__}); "
                              f"convert it with .to_dask_array(lengths=True)")
    if not (np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.bool_)):
        raise LossOptionError(f"{what} must be an array of numbers, not of dtype {value.dtype}")
    if any(math.isnan(c) for axis in value.chunks for c in axis):
        raise LossOptionError(f"{what} has chunks of unknown size; call {what}.compute_chunk_sizes() first")
    return value


def fit(prepared: _Prepared, name: str, X: Any, y: Any, *, method: str, params: Mapping[str, float] | None,
        inputs: Mapping[str, Any] | None, l1: float, l2: float, w0: Any, tol: float, max_iter: int,
        step_size: float | None, classes: int | None, reference_class: int | None,
        progress: bool | TextIO) -> FitResult:
    """fit_linear for Dask arrays (see the module notes); options already checked by fit_linear."""
    import dask
    import dask.array as da

    if not dask.is_dask_collection(X):
        raise LossOptionError("X must be a Dask array when y or an input is one (chunk X by rows, and "
                              "the others the same way)")
    X = _dask_array(X, "X")
    if X.ndim != 2:
        raise LossOptionError(f"X must be a 2-D array (n samples, d features), not of shape {X.shape}")
    n, d = X.shape
    if n == 0:
        raise LossOptionError("X has no rows")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})                           # one block of columns per row chunk
    rows = X.chunks[0]
    mod = prepared.module
    target = mod.TARGETS[0]
    others = [a for a in mod.ARGUMENTS if a != target]

    given: dict[str, Any] = {}
    for key, value in _given(prepared, name, y, inputs).items():
        if dask.is_dask_collection(value):
            given[key] = _dask_array(value, key)
        else:
            array = np.asarray(value)
            if not (np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.bool_)):
                raise LossOptionError(f"{key} must be an array of numbers")
            array = array.astype(np.float64)
            if not np.all(np.isfinite(array)):
                raise LossOptionError(f"{key} contains a NaN or an infinity")
            given[key] = array
    values = _parameters(mod, name, params)
    first = others[0] if others else None

    with _scheduler() as client:
        def compute(*collections: Any) -> tuple:
            if client is not None:
                return tuple(client.compute(list(collections), sync=True))
            return dask.compute(*collections)

        def largest() -> float:
            labels = given[first]
            if labels.size == 0:
                raise LossOptionError(f"{first} holds no labels; pass classes= for the number of classes")
            return float(compute(labels.max())[0]) if dask.is_dask_collection(labels) else float(np.max(labels))

        k, source = _outputs(prepared, name, first, given, n, classes, w0, largest=largest)
        data: dict[str, Any] = {}
        for key in others:
            value = _conform(prepared, key, given[key], key == first, n, k, source)
            if dask.is_dask_collection(value):
                value = value.rechunk((rows,) + tuple(-1 for _ in value.shape[1:]))
            elif value.ndim >= 1:                         # a NumPy array with one row per sample
                value = da.from_array(value, chunks=(rows,) + value.shape[1:])
            data[key] = value
        if client is not None:                           # keep the chunks in the workers' memory for the fit
            names = [key for key in data if dask.is_dask_collection(data[key])]
            persisted = client.persist([X] + [data[key] for key in names])
            X = persisted[0]
            data.update(zip(names, persisted[1:]))
        labels = first if (k is not None and prepared.domain(first) == "index") else None
        _check_values(X, data, labels, k, compute)
        chunks = _Chunks(X, data, tuple(mod.ARGUMENTS), target, _sum_source(prepared), values, client)
        count = n * (k if (k is not None and prepared.kind == "elementwise") else 1)

        def objective_for(reference: int | None) -> _Objective:
            return _DaskObjective(prepared, X, data, values, l1, l2, k, reference, chunks, count)

        def invariant(W: np.ndarray) -> bool:
            return bool(chunks.first(_shift_invariant, W))

        return _solve(prepared, name, method, objective_for, invariant, d, k, source, l2, w0, tol, max_iter,
                      step_size, reference_class, progress)


def _sum_source(prepared: _Prepared) -> str:
    """The emitted NumPy source of the loss with reduction='sum' (the workers sum, the client scales)."""
    from dataclasses import replace

    return replace(prepared.compiled, reduction="sum").emit("numpy")


def _check_values(X: Any, data: dict[str, Any], labels: str | None, k: int | None,
                  compute: Callable[..., tuple]) -> None:
    """One pass over the data: every value finite, and class indices integers in [0, k)."""
    import dask
    import dask.array as da

    checks: dict[str, Any] = {"X": da.isfinite(X).all()}
    for key, value in data.items():
        if dask.is_dask_collection(value):
            checks[key] = da.isfinite(value).all()
    if labels is not None and dask.is_dask_collection(data[labels]):
        value = data[labels]
        checks["labels"] = ((value != da.round(value)) | (value < 0) | (value >= k)).any()
        checks["labels_min"] = value.min()
        checks["labels_max"] = value.max()
    results = dict(zip(checks, compute(*checks.values())))
    for key in ["X"] + [key for key in data if key in results]:
        if not results[key]:
            raise LossOptionError(f"{key} contains a NaN or an infinity")
    if results.get("labels"):
        low, high = float(results["labels_min"]), float(results["labels_max"])
        bad = low if low < 0 else high if high >= k else None
        found = f"it has {bad:g}" if bad is not None else "it has a value that is not an integer"
        raise LossOptionError(f"{labels} holds class indices, integers from 0 to {k - 1} for {k} classes; "
                              f"{found}" + (" (pass classes= for more classes)" if bad is not None and bad >= k
                                            else ""))
    if labels is not None and not dask.is_dask_collection(data[labels]):
        _labels(np.asarray(data[labels]), labels, k)


__all__ = ["fit"]
