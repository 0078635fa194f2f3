"""One Newton step of logistic regression, n = 10^5 and d = 50: losscomp's generated Hessian against
torch.func.hessian and jax.hessian, side by side in one run; then the same for softmax regression
(sparse_softmax_ce, k = 4 classes, W of shape (d, k), a (d k, d k) Hessian).

A step is what `fit_linear` does per iteration, minus the line search: the gradient and the Hessian
of the mean loss in w, a Cholesky solve, the update. The columns:

    losscomp numpy       grad and newton_hessian (X^T diag(l'') X / n) of the module built for NumPy;
                         scipy's cho_factor / cho_solve
    losscomp torch       the same two functions of the module built for PyTorch; torch.linalg.cholesky
    torch.func.hessian   torch.func.grad and torch.func.hessian (forward over reverse) of
                         binary_cross_entropy_with_logits(X @ w, y).mean(); torch.linalg.cholesky
    jax.hessian (jit)    jax.grad and jax.hessian of mean(logaddexp(0, z) - y z), z = X @ w, the whole
                         step under jax.jit (compilation timed apart); float64; skipped if jax is absent

Softmax regression: the same four columns for mean cross-entropy on logits X @ W plus l2 |W|^2 with
a small l2 (1e-4), which makes the Hessian positive definite (without it, it is singular along
W -> W + v 1^T): newton_hessian gives sum_i (x_i x_i^T) (x) H_i / n from the per-sample blocks H_i;
torch.func.hessian of cross_entropy(X @ W, y) and jax.hessian of the log-softmax likelihood give
(d, k, d, k) arrays, read as (d k, d k) in the row-major order of W. Its d is --softmax-d (default 20,
so that d k = 80).

All in float64 on the CPU. Each column is warmed up once, then `--repeat` rounds time every column
once, in turn, so that a change in the machine's load hits them alike; the table gives the median and
the best time, the ratios to losscomp numpy, and checks that every column takes the same step. The table, the machine and the date go to benchmarks/results/newton_step.md.

    python benchmarks/newton_step.py                  # pip install -e '.[torch,bench]' for every column
    python benchmarks/newton_step.py --threads 2      # results/newton_step.md either way
    python benchmarks/newton_step.py --classes 0      # logistic regression only
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

import losscomp

HERE = Path(__file__).resolve().parent


def data(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, d - 1))])
    w_true = rng.normal(scale=0.3, size=d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X @ w_true)))).astype(np.float64)
    w = rng.normal(scale=0.1, size=d)          # a point on the way, not the solution
    return X, y, w


def softmax_data(n: int, d: int, k: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    X = np.column_stack([np.ones(n), rng.normal(size=(n, d - 1))])
    logits = X @ rng.normal(scale=0.3, size=(d, k))
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)     # class indices 0..k-1
    W = rng.normal(scale=0.1, size=(d, k))
    return X, y, W


SOFTMAX_L2 = 1e-4


def time_round_robin(steps: dict[str, Callable[[], np.ndarray]], repeat: int
                     ) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Each step once to warm up (imports, caches, first-call set-up), then `repeat` rounds that
    time every step once, so that a change in the machine's load hits all columns alike."""
    results = {label: np.asarray(step()) for label, step in steps.items()}
    times: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(repeat):
        for label, step in steps.items():
            start = time.perf_counter()
            results[label] = np.asarray(step())
            times[label].append(time.perf_counter() - start)
    return times, results


def losscomp_numpy(X, y, w):
    from scipy.linalg import cho_factor, cho_solve

    mod = losscomp.compile("bce_logits").build("numpy")

    def step():
        g = X.T @ mod.grad(y, X @ w)
        H = mod.newton_hessian(X, y, w)
        return w - cho_solve(cho_factor(H, lower=True, check_finite=False), g, check_finite=False)

    return step


def losscomp_torch(X, y, w):
    import torch

    mod = losscomp.compile("bce_logits").build("torch")
    Xt, yt, wt = (torch.tensor(a) for a in (X, y, w))

    def step():
        g = Xt.T @ mod.grad(yt, Xt @ wt)
        L = torch.linalg.cholesky(mod.newton_hessian(Xt, yt, wt))
        return (wt - torch.cholesky_solve(g[:, None], L)[:, 0]).numpy()

    return step


def torch_func_hessian(X, y, w):
    import torch
    import torch.nn.functional as F

    Xt, yt, wt = (torch.tensor(a) for a in (X, y, w))

    def objective(v):
        return F.binary_cross_entropy_with_logits(Xt @ v, yt)

    def step():
        g = torch.func.grad(objective)(wt)
        L = torch.linalg.cholesky(torch.func.hessian(objective)(wt))
        return (wt - torch.cholesky_solve(g[:, None], L)[:, 0]).numpy()

    return step


def jax_hessian(X, y, w):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_factor, cho_solve

    Xj, yj, wj = (jnp.asarray(a) for a in (X, y, w))

    def objective(v):
        z = Xj @ v
        return jnp.mean(jnp.logaddexp(0.0, z) - yj * z)

    @jax.jit
    def newton(v):
        return v - cho_solve(cho_factor(jax.hessian(objective)(v), lower=True), jax.grad(objective)(v))

    start = time.perf_counter()
    newton.lower(wj).compile()
    compile_seconds = time.perf_counter() - start

    def step():
        return np.asarray(newton(wj).block_until_ready())

    step.compile_seconds = compile_seconds
    return step


def softmax_losscomp_numpy(X, y, W):
    from scipy.linalg import cho_factor, cho_solve

    mod = losscomp.compile("sparse_softmax_ce").build("numpy")
    eye = np.eye(W.size)

    def step():
        g = (X.T @ mod.grad(y, X @ W) + 2 * SOFTMAX_L2 * W).ravel()
        H = mod.newton_hessian(X, y, W) + 2 * SOFTMAX_L2 * eye
        return W - cho_solve(cho_factor(H, lower=True, check_finite=False), g, check_finite=False).reshape(W.shape)

    return step


def softmax_losscomp_torch(X, y, W):
    import torch

    mod = losscomp.compile("sparse_softmax_ce").build("torch")
    Xt, yt, Wt = torch.tensor(X), torch.tensor(y), torch.tensor(W)
    eye = torch.eye(W.size, dtype=torch.float64)

    def step():
        g = (Xt.T @ mod.grad(yt, Xt @ Wt) + 2 * SOFTMAX_L2 * Wt).reshape(-1, 1)
        L = torch.linalg.cholesky(mod.newton_hessian(Xt, yt, Wt) + 2 * SOFTMAX_L2 * eye)
        return (Wt - torch.cholesky_solve(g, L).reshape(Wt.shape)).numpy()

    return step


def softmax_torch_func_hessian(X, y, W):
    import torch
    import torch.nn.functional as F

    Xt, yt, Wt = torch.tensor(X), torch.tensor(y), torch.tensor(W)

    def objective(V):
        return F.cross_entropy(Xt @ V, yt) + SOFTMAX_L2 * (V * V).sum()

    def step():
        g = torch.func.grad(objective)(Wt).reshape(-1, 1)
        L = torch.linalg.cholesky(torch.func.hessian(objective)(Wt).reshape(Wt.numel(), Wt.numel()))
        return (Wt - torch.cholesky_solve(g, L).reshape(Wt.shape)).numpy()

    return step


def softmax_jax_hessian(X, y, W):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax.scipy.linalg import cho_factor, cho_solve

    Xj, Wj = jnp.asarray(X), jnp.asarray(W)
    onehot = jnp.asarray(np.eye(W.shape[1])[y])
    size = W.size

    def objective(V):
        return -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(Xj @ V, axis=1), axis=1)) + SOFTMAX_L2 * jnp.sum(V * V)

    @jax.jit
    def newton(V):
        H = jax.hessian(objective)(V).reshape(size, size)
        return V - cho_solve(cho_factor(H, lower=True), jax.grad(objective)(V).reshape(size)).reshape(V.shape)

    start = time.perf_counter()
    newton.lower(Wj).compile()
    compile_seconds = time.perf_counter() - start

    def step():
        return np.asarray(newton(Wj).block_until_ready())

    step.compile_seconds = compile_seconds
    return step


def machine() -> list[str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for name in ("scipy", "torch", "jax"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    lines = [f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
             f"- machine: {platform.system()} {platform.release()} {platform.machine()}, {cpu}, "
             f"{os.cpu_count()} logical CPUs",
             f"- load average before the run (1, 5, 15 min): {load}",
             f"- versions: {', '.join(versions)}, losscomp {losscomp.__version__}"]
    try:
        import torch
        lines.append(f"- torch threads: {torch.get_num_threads()}")
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info
        blas = [f"{p['internal_api']} ({p['num_threads']} threads)" for p in threadpool_info()
                if p.get("user_api") == "blas"]
        if blas:
            lines.append(f"- NumPy/SciPy BLAS: {', '.join(sorted(set(blas)))}")
    except ImportError:
        pass
    return lines


def limit_threads(threads: int) -> None:
    """The same number of threads for every column: NumPy/SciPy's BLAS (threadpoolctl), torch's
    intra-op pool, and XLA's CPU client (jax is imported later, so its flags still apply)."""
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=threads, user_api="blas")
    except ImportError:
        print("threadpoolctl is not installed: NumPy's BLAS keeps its own thread count")
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    if threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()


def run_columns(columns, X, y, w, repeat: int) -> tuple[list[str], list[str]]:
    """The table rows of one problem, and notes on skipped columns and jit compilation."""
    steps, notes = {}, []
    for label, make in columns:
        try:
            steps[label] = make(X, y, w)
        except ImportError as error:
            notes.append(f"{label}: skipped, {error.name or error} is not installed "
                         f"(pip install -e '.[torch,bench]' for every column)")
            continue
        if hasattr(steps[label], "compile_seconds"):
            notes.append(f"{label}: jit compilation {steps[label].compile_seconds:.2f} s, not in the timings")
    with warnings.catch_warnings():
        # torch's first forward-mode AD use scripts its decompositions and warns that
        # torch.jit.script is deprecated: noise, not a result
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)
        times, results = time_round_robin(steps, repeat)
    reference = results["losscomp numpy"]
    rows = [(label, statistics.median(times[label]), min(times[label]),
             float(np.max(np.abs(results[label] - reference)))) for label in steps]
    base = rows[0][1]
    best_base = rows[0][2]
    table = ["| column | median s | best s | median / losscomp numpy's | best / losscomp numpy's "
             "| max abs(w_new - losscomp numpy's) |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, median, best, diff in rows:
        table.append(f"| {label} | {median:.4f} | {best:.4f} | {median / base:.2f} | {best / best_base:.2f} "
                     f"| {diff:.1e} |")
    return table, notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=50)
    parser.add_argument("--classes", type=int, default=4,
                        help="classes k of the softmax regression (0: logistic regression only)")
    parser.add_argument("--softmax-d", type=int, default=20, help="d of the softmax regression")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for BLAS, torch and XLA (default 1: steadier on a shared machine)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "newton_step.md")
    args = parser.parse_args(argv)
    limit_threads(args.threads)

    header = machine()
    X, y, w = data(args.n, args.d)
    columns = [("losscomp numpy", losscomp_numpy), ("losscomp torch", losscomp_torch),
               ("torch.func.hessian", torch_func_hessian), ("jax.hessian (jit)", jax_hessian)]
    table, notes = run_columns(columns, X, y, w, args.repeat)
    sections = [f"## Logistic regression (bce_logits), n = {args.n}, d = {args.d}", "", *table, "",
                *(f"- {note}" for note in notes)]
    if args.classes:
        X, y, W = softmax_data(args.n, args.softmax_d, args.classes)
        columns = [("losscomp numpy", softmax_losscomp_numpy), ("losscomp torch", softmax_losscomp_torch),
                   ("torch.func.hessian", softmax_torch_func_hessian), ("jax.hessian (jit)", softmax_jax_hessian)]
        table, notes = run_columns(columns, X, y, W, args.repeat)
        sections += ["", f"## Softmax regression (sparse_softmax_ce + {SOFTMAX_L2:g} |W|^2), n = {args.n}, "
                     f"d = {args.softmax_d}, k = {args.classes}: a ({args.softmax_d * args.classes}, "
                     f"{args.softmax_d * args.classes}) Hessian", "", *table, "",
                     *(f"- {note}" for note in notes)]
    load_after = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    header.append(f"- load average after the run: {load_after}")

    options = ((f" --n {args.n}" if args.n != 100_000 else "") + (f" --d {args.d}" if args.d != 50 else "")
               + (f" --classes {args.classes}" if args.classes != 4 else "")
               + (f" --softmax-d {args.softmax_d}" if args.softmax_d != 20 else "")
               + (f" --repeat {args.repeat}" if args.repeat != 15 else "")
               + (f" --threads {args.threads}" if args.threads != 1 else ""))
    text = "\n".join([
        f"# One Newton step with the generated Hessian, float64, {args.threads} "
        f"thread{'s' if args.threads != 1 else ''}",
        "", f"Command: `python benchmarks/newton_step.py{options}` (one warm-up, then {args.repeat} rounds "
        f"that time each column once).", "",
        *header, "", *sections, ""])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
