"""Newton's method for logistic regression on a Dask cluster: losscomp.fit_linear against dask-ml's
LogisticRegression(solver="newton"), side by side in one run.

The data, n x d (default 10^7 x 50) in row chunks of --chunk (default 10^5), are generated on the
workers, one seeded task per chunk (an intercept column, standard normal features, labels from a
fixed logistic model), stored as float32 (10^7 x 50 is 2 GB; float64 would be 4 GB) and persisted in
the workers' memory before either fit, so both read the same chunks and neither pays for generating
them. Neither the client nor any one worker ever holds all of X.

    losscomp    fit_linear("bce_logits", X, y): per chunk, value, X_c^T grad and X_c^T diag(l'') X_c
                from the emitted NumPy module (cast to float64 on the worker), tree sums, Cholesky
                solve and Armijo line search on the client; stops at gradient norm <= --tol.
                A Newton iteration is one pass for the Hessian and one (or more, when the line
                search shortens the step) for the value and gradient at the trial point.
    dask-ml     dask_ml.linear_model.LogisticRegression(solver="newton", fit_intercept=False,
                tol=1e-8): dask_glm's Newton: gradient and Hessian X^T diag(p (1 - p)) X by
                dask.array dot products in one pass, a least-squares solve, the full step, no line
                search; stops when no coefficient moves by more than tol. Its iterations are
                counted by wrapping dask_glm's Logistic.hessian (called once per iteration).

Both minimize the unpenalized log-likelihood (dask-ml's newton solver ignores C), with the intercept
as the first column of X. The table gives each fit's wall time, its iterations, the time per
iteration, and the largest difference of its coefficients from losscomp's. Results, with the
machine, the versions and the date, go to benchmarks/results/dask_newton.md (or --out).

    python benchmarks/dask_newton.py                        # 10^7 x 50, chunks of 10^5, 2 workers
    python benchmarks/dask_newton.py --n 1000000            # a smaller n
    python benchmarks/dask_newton.py --n 40000 --chunk 10000 --out /tmp/smoke.md   # a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np

import losscomp

HERE = Path(__file__).resolve().parent
SEED = 20260701


def chunk(i: int, rows: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Row chunk i: float32 X_c (intercept first) and labels y_c ~ Bernoulli(sigmoid(X_c w_true))."""
    rng = np.random.default_rng([SEED, i])
    X = np.empty((rows, d), dtype=np.float32)
    X[:, 0] = 1
    X[:, 1:] = rng.standard_normal(size=(rows, d - 1), dtype=np.float32)
    w_true = np.random.default_rng(SEED).normal(scale=1 / np.sqrt(d), size=d)
    y = (rng.random(rows) < 1 / (1 + np.exp(-(X @ w_true)))).astype(np.float64)
    return X, y


def data(client, n: int, d: int, rows: int):
    """(X, y) as Dask arrays generated and persisted on the workers."""
    import dask
    import dask.array as da

    if n % rows:
        raise SystemExit(f"--n ({n}) must be a multiple of --chunk ({rows})")
    parts = [dask.delayed(chunk, nout=2, pure=True)(i, rows, d) for i in range(n // rows)]
    X = da.concatenate([da.from_delayed(p[0], shape=(rows, d), dtype=np.float32) for p in parts])
    y = da.concatenate([da.from_delayed(p[1], shape=(rows,), dtype=np.float64) for p in parts])
    X, y = client.persist([X, y])
    from distributed import wait
    wait([X, y])
    return X, y


@contextlib.contextmanager
def counting_hessian_calls():
    """dask_glm's Logistic.hessian wrapped to count its calls: one per Newton iteration."""
    from dask_glm.families import Logistic

    original = Logistic.hessian
    calls = [0]

    def hessian(Xbeta, X):
        calls[0] += 1
        return original(Xbeta, X)

    Logistic.hessian = staticmethod(hessian)
    try:
        yield calls
    finally:
        Logistic.hessian = staticmethod(original)


def run_losscomp(X, y, tol: float):
    start = time.perf_counter()
    result = losscomp.fit_linear("bce_logits", X, y, tol=tol)
    seconds = time.perf_counter() - start
    return {"column": "losscomp fit_linear", "seconds": seconds, "iterations": result.n_iter,
            "converged": result.converged, "w": result.w,
            "note": f"gradient norm {result.grad_norm:.1e}"}


def run_dask_ml(X, y):
    from dask_ml.linear_model import LogisticRegression

    with counting_hessian_calls() as calls:
        start = time.perf_counter()
        model = LogisticRegression(solver="newton", fit_intercept=False, tol=1e-8, max_iter=100).fit(X, y)
        seconds = time.perf_counter() - start
    return {"column": "dask-ml LogisticRegression(solver='newton')", "seconds": seconds, "iterations": calls[0],
            "converged": calls[0] <= 100, "w": np.asarray(model.coef_, dtype=np.float64).ravel(),
            "note": "coefficient change <= 1e-8"}


def machine(workers: int, threads: int, blas: int) -> list[str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for name in ("scipy", "dask", "distributed", "dask_ml", "dask_glm"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return [f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- machine: {platform.system()} {platform.release()} {platform.machine()}, {cpu}, "
            f"{os.cpu_count()} logical CPUs",
            f"- cluster: distributed.LocalCluster, {workers} workers x {threads} threads (in one process), "
            f"BLAS {blas} thread(s) per task",
            f"- load average before the run (1, 5, 15 min): {load}",
            f"- versions: {', '.join(versions)}, losscomp {losscomp.__version__}"]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="samples (a multiple of --chunk)")
    parser.add_argument("--d", type=int, default=50, help="features, the intercept column included")
    parser.add_argument("--chunk", type=int, default=100_000, help="rows per chunk")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker")
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--tol", type=float, default=1e-8, help="losscomp's gradient-norm tolerance")
    parser.add_argument("--skip-dask-ml", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dask_newton.md")
    args = parser.parse_args(argv)

    import distributed
    from threadpoolctl import threadpool_limits

    header = machine(args.workers, args.threads, args.blas_threads)
    rows = []
    with threadpool_limits(limits=args.blas_threads, user_api="blas"), \
            distributed.LocalCluster(n_workers=args.workers, threads_per_worker=args.threads, processes=False,
                                     dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        start = time.perf_counter()
        X, y = data(client, args.n, args.d, args.chunk)
        generated = time.perf_counter() - start
        print(f"data: {args.n} x {args.d} float32 in {args.n // args.chunk} chunks of {args.chunk} rows, "
              f"{X.nbytes / 1e9:.2f} GB, generated and persisted in {generated:.1f} s")
        rows.append(run_losscomp(X, y, args.tol))
        print(_line(rows[-1]))
        if not args.skip_dask_ml:
            rows.append(run_dask_ml(X, y))
            print(_line(rows[-1]))
    load_after = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"

    reference = rows[0]
    table = ["| column | iterations | total s | s per iteration | per iteration / losscomp's | "
             "max abs(w - losscomp's w) | stopped on |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        per = row["seconds"] / max(row["iterations"], 1)
        ratio = per / (reference["seconds"] / max(reference["iterations"], 1))
        table.append(f"| {row['column']} | {row['iterations']} | {row['seconds']:.1f} | {per:.2f} | {ratio:.2f} | "
                     f"{np.max(np.abs(row['w'] - reference['w'])):.1e} | {row['note']} |")
    text = "\n".join([
        f"# Newton's method for logistic regression on Dask: {args.n} x {args.d}, chunks of {args.chunk}",
        "",
        f"Command: `python benchmarks/dask_newton.py --n {args.n} --d {args.d} --chunk {args.chunk} "
        f"--workers {args.workers}`",
        "",
        *header,
        f"- load average after the run: {load_after}",
        f"- data: float32, generated on the workers and persisted ({X.nbytes / 1e9:.2f} GB) in "
        f"{generated:.1f} s, before both fits",
        "",
        *table,
        "",
        "One run on a shared machine (see the load averages): compare the ratio of the times per iteration, "
        "not the seconds. A losscomp iteration is a Hessian pass plus a value-and-gradient pass per line-search trial (one when "
        "the full step is taken); its total includes one more value-and-gradient pass at the start and a pass "
        "that checks the data for NaN. A dask-ml iteration is one pass for gradient and Hessian together.",
        ""])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"\n{text}\nwritten to {args.out}")
    return rows


def _line(row: dict) -> str:
    return (f"{row['column']}: {row['iterations']} iterations in {row['seconds']:.1f} s "
            f"({row['seconds'] / max(row['iterations'], 1):.2f} s per iteration), {row['note']}")


if __name__ == "__main__":
    main()
