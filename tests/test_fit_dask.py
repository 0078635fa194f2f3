"""fit_linear on Dask arrays (losscomp.fit_dask) against the in-memory fit.

The data are generated chunk by chunk on the workers (one seeded task per row chunk gives X_c and
y_c), so that the cluster never receives X from the client; the in-memory fit gets the same chunks
concatenated. Truth is the in-memory fit (itself tested against scikit-learn and statsmodels in
test_fit.py): the same iterates, w within 1e-8. The memory test records, on the scheduler, every
task result of a fit: none is larger than one chunk of X (with its labels), none depends on two
chunks of X, and X's chunks sit on several workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import losscomp
from losscomp import NewtonNotApplicableError, fit_linear

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

CHUNK, CHUNKS, D = 2_000, 12, 12
N = CHUNK * CHUNKS


def _chunk(seed: int, i: int, rows: int, d: int, kind: str, dtype=np.float64):
    """Row chunk i: X_c (intercept column first) and labels of the given kind from a fixed model."""
    rng = np.random.default_rng([seed, i])
    X = np.column_stack([np.ones(rows), rng.normal(size=(rows, d - 1))])
    coef = np.random.default_rng(seed).normal(scale=0.4, size=(d, 3))
    eta = X @ coef
    if kind == "binary":
        y = (rng.random(rows) < 1 / (1 + np.exp(-eta[:, 0]))).astype(np.float64)
    elif kind == "count":
        y = rng.poisson(np.exp(0.5 * eta[:, 0])).astype(np.float64)
    elif kind == "classes":
        p = np.exp(eta - eta.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        y = (rng.random(rows)[:, None] > np.cumsum(p, axis=1)).sum(axis=1).astype(np.float64)
    else:
        y = eta[:, 0] + rng.standard_t(3, size=rows)
    return X.astype(dtype), y


def make_data(kind: str, seed: int = 11, chunks: int = CHUNKS, rows: int = CHUNK, d: int = D, dtype=np.float64):
    """(X, y) as Dask arrays generated on the workers, and the same as NumPy arrays."""
    parts = [dask.delayed(_chunk, nout=2, pure=True)(seed, i, rows, d, kind, dtype) for i in range(chunks)]
    X = da.concatenate([da.from_delayed(p[0], shape=(rows, d), dtype=dtype) for p in parts])
    y = da.concatenate([da.from_delayed(p[1], shape=(rows,), dtype=np.float64) for p in parts])
    local = [_chunk(seed, i, rows, d, kind, dtype) for i in range(chunks)]
    return X, y, np.concatenate([c[0] for c in local]), np.concatenate([c[1] for c in local])


def _same_fit(got, expected, atol=1e-8):
    assert got.converged and expected.converged
    assert got.n_iter == expected.n_iter
    np.testing.assert_allclose(got.w, expected.w, rtol=0, atol=atol)
    np.testing.assert_allclose(got.losses, expected.losses, rtol=1e-12)
    assert got.reference_class == expected.reference_class


def test_default_local_cluster_without_a_client():
    """No client: fit_linear starts a LocalCluster for the fit and closes it."""
    with pytest.raises(ValueError):
        distributed.get_client()
    X, y, Xn, yn = make_data("binary", chunks=4)
    _same_fit(fit_linear("bce_logits", X, y), fit_linear("bce_logits", Xn, yn))
    with pytest.raises(ValueError):
        distributed.get_client()


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=4, threads_per_worker=1, processes=False, dashboard_address=None) \
            as local, distributed.Client(local) as client:
        yield local, client


CASES = [   # (loss, data kind, fit options)
    ("bce_logits", "binary", {}),
    ("poisson_nll", "count", {}),
    ("huber", "regression", {"params": {"delta": 1.5}, "l2": 1e-3}),
    ("sparse_softmax_ce", "classes", {}),                         # k = 3, reference class 0
    ("sparse_softmax_ce", "classes", {"l2": 1e-2}),                # k = 3, the whole W
    ("mse", "regression", {"method": "gd", "l1": 0.05}),          # proximal gradient
]


@pytest.mark.parametrize("loss, kind, options", CASES)
def test_matches_in_memory_fit_on_four_workers(cluster, loss, kind, options):
    X, y, Xn, yn = make_data(kind)
    got = fit_linear(loss, X, y, **options)
    expected = fit_linear(loss, Xn, yn, **options)
    _same_fit(got, expected, atol=1e-8 if options.get("method") != "gd" else 1e-10)


def test_sum_reduction_float32_chunks_and_numpy_labels(cluster):
    """A loss compiled with reduction='sum'; X stored as float32 (cast per chunk on the workers), the
    in-memory fit on the same float32 values; labels given as a NumPy array."""
    X, y, Xn, yn = make_data("binary", dtype=np.float32)
    loss = losscomp.compile("bce_logits", reduction="sum")
    _same_fit(fit_linear(loss, X, yn, tol=1e-6), fit_linear(loss, Xn, yn, tol=1e-6))


def test_x_chunked_by_columns_is_rechunked(cluster):
    X, y, Xn, yn = make_data("count", chunks=4)
    _same_fit(fit_linear("poisson_nll", X.rechunk((CHUNK, 5)), y), fit_linear("poisson_nll", Xn, yn))


class _Recorder(distributed.diagnostics.plugin.SchedulerPlugin):
    """Every task result the scheduler sees: its size, its dependencies and the workers that hold it."""

    name = "losscomp-recorder"

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.results: dict = {}

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "memory":
            task = self.scheduler.tasks[key]
            self.results[key] = (task.nbytes, {dep.key for dep in task.dependencies},
                                 {worker.address for worker in task.who_has})


def test_x_never_materialises_on_one_worker(cluster):
    local, _ = cluster
    recorder = _Recorder(local.scheduler)
    local.scheduler.add_plugin(recorder)
    try:
        X, y, Xn, yn = make_data("binary", seed=12)
        result = fit_linear("bce_logits", X, y)
    finally:
        local.scheduler.remove_plugin(name=recorder.name)
    assert result.converged and result.n_iter >= 3
    chunk_bytes = CHUNK * D * 8
    x_keys = set(dask.core.flatten(X.__dask_keys__()))
    results = recorder.results
    assert x_keys <= set(results)                                   # X was computed on the cluster
    largest = max(nbytes for nbytes, _, _ in results.values())
    assert largest <= chunk_bytes + CHUNK * 8 + 1024               # one chunk of X and its labels, at most
    assert max(len(deps & x_keys) for _, deps, _ in results.values()) == 1
    holders = set().union(*(results[key][2] for key in x_keys))
    assert len(holders) >= 2                                        # X's chunks spread over the workers
    assert X.nbytes >= CHUNKS * chunk_bytes > 4 * largest


def test_indefinite_hessian_reported_as_in_memory(cluster):
    """Tukey far from the fit: the same refusal, with curvature counts computed on the workers."""
    X, y, Xn, yn = make_data("regression", chunks=4)
    start = np.full(D, 25.0)
    with pytest.raises(NewtonNotApplicableError) as on_cluster:
        fit_linear("tukey", X, y, w0=start)
    with pytest.raises(NewtonNotApplicableError) as in_memory:
        fit_linear("tukey", Xn, yn, w0=start)
    assert str(on_cluster.value).split("(eigenvalues")[0] == str(in_memory.value).split("(eigenvalues")[0]
    assert "of 8000 samples" in str(on_cluster.value)


def test_bad_data(cluster):
    X, y, Xn, yn = make_data("classes", chunks=2)
    with pytest.raises(losscomp.LossOptionError, match="X contains a NaN or an infinity"):
        fit_linear("bce_logits", da.where(X > 3, np.nan, X), y)
    with pytest.raises(losscomp.LossOptionError, match="integers from 0 to 1 for 2 classes; it has 2"):
        fit_linear("sparse_softmax_ce", X, y, classes=2)
    with pytest.raises(losscomp.LossOptionError, match=r"y must have shape \(4000,\) to match X, not \(3999,\)"):
        fit_linear("bce_logits", X, yn[:-1])
    with pytest.raises(losscomp.LossOptionError, match="chunks of unknown size"):
        fit_linear("bce_logits", X[X[:, 1] > 0], y)
    with pytest.raises(losscomp.LossOptionError, match="X must be a Dask array"):
        fit_linear("bce_logits", Xn, y)


def test_benchmark_smoke(tmp_path):
    """benchmarks/dask_newton.py at a tiny size: both columns, the same coefficients."""
    pytest.importorskip("dask_ml")
    pytest.importorskip("threadpoolctl")
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "dask_newton.md"
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(root / "benchmarks" / "dask_newton.py"), "--n", "20000", "--d", "8",
                          "--chunk", "5000", "--out", str(out)], capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith(("| losscomp", "| dask-ml"))]
    assert len(rows) == 2
    assert float(rows[1].split("|")[6]) < 1e-6                      # dask-ml's w within 1e-6 of losscomp's
