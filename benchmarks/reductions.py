"""Softmax cross-entropy on logits (catalog `softmax_ce`): the structured Hessian-vector product
against the dense per-sample Hessian blocks, side by side in one run (issue 3, acceptance 3).

    hvp        mod.hvp(y, z, v): forward over reverse through the per-sample reductions, O(N C) work
               and memory; timed on 10^4 samples x 250, 500 and 1000 classes to show that its time
               per element is constant (linear in N C).
    hessian    mod.hessian(y, z): the dense (N, C, C) blocks, O(N C^2) work and memory; 10^4 x 1000
               would take 80 GB, so it is timed on 10^3 x 50, 100 and 200 and extrapolated per
               Hessian entry to 10^4 x 1000.
    blocks @ v einsum('nij,nj->ni') with the blocks already built: the cheapest use of them.

NumPy and PyTorch modules, float64, CPU. Every call is warmed up once, then `--repeat` rounds time
each call of a group once, in turn, with time.perf_counter (two groups: hvp at the large sizes, then
the dense sizes); the tables give the wall time (median and best) and the median user and system CPU
time, since the kernel's handing out of fresh zeroed pages for large temporaries is a visible part of
the wall time, and on a shared machine so is waiting for a CPU.
The results, the machine and the date go to benchmarks/results/reductions.md.

    python benchmarks/reductions.py                 # 1 thread (steadier on a shared machine)
    python benchmarks/reductions.py --threads 2
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

try:
    import resource
except ImportError:  # not on Windows: no page-fault counts
    resource = None
from pathlib import Path
from typing import Callable

import numpy as np

import losscomp

HERE = Path(__file__).resolve().parent
HVP_SIZES = [(10_000, 250), (10_000, 500), (10_000, 1000)]
HESSIAN_SIZES = [(1_000, 50), (1_000, 100), (1_000, 200)]
TARGET = (10_000, 1000)


def data(n: int, c: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.dirichlet(np.ones(c), size=n)
    z = rng.normal(scale=2.0, size=(n, c))
    v = rng.normal(size=(n, c))
    return y, z, v


def _cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far; zeros where getrusage is missing."""
    if resource is None:
        return 0.0, 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def time_round_robin(calls: dict, repeat: int) -> dict[object, np.ndarray]:
    """Each call once to warm up, then `repeat` rounds that time every call once, in turn, so that a
    change in the machine's load hits all of them alike. Per call and round: (wall, user CPU, system
    CPU) seconds. User time is the arithmetic; system time is mostly the kernel handing out fresh
    zeroed pages for large temporaries; wall minus both is time spent waiting for a CPU."""
    for fn in calls.values():
        fn()
    records: dict[object, list] = {key: [] for key in calls}
    for _ in range(repeat):
        for key, fn in calls.items():
            user, system = _cpu()
            start = time.perf_counter()
            fn()
            wall = time.perf_counter() - start
            user2, system2 = _cpu()
            records[key].append((wall, user2 - user, system2 - system))
    return {key: np.asarray(r) for key, r in records.items()}


class Backend:
    """The softmax_ce module of one backend and its array conversions."""

    def __init__(self, name: str):
        self.name = name
        self.mod = losscomp.compile("softmax_ce").build(name)
        if name == "torch":
            import torch
            self.torch = torch

    def array(self, x: np.ndarray):
        return self.torch.tensor(x) if self.name == "torch" else x

    def numpy(self, x) -> np.ndarray:
        return x.numpy() if self.name == "torch" else np.asarray(x)

    def einsum(self, blocks, v):
        lib = self.torch if self.name == "torch" else np
        return lib.einsum("nij,nj->ni", blocks, v)


def machine(threads: int) -> list[str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = "unknown"
    try:
        with open("/proc/meminfo") as info:
            kb = next(int(line.split()[1]) for line in info if line.startswith("MemTotal"))
        ram = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    try:
        import torch
        versions.append(f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads)")
    except ImportError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return [f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
            f"- machine: {platform.system()} {platform.release()} {platform.machine()}, CPU {cpu}, "
            f"nproc {nproc}, RAM {ram}",
            f"- threads for NumPy's BLAS and torch: {threads}",
            f"- versions: {', '.join(versions)}, losscomp {losscomp.__version__}",
            f"- load average before the run (1, 5, 15 min): {load}"]


def limit_threads(threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=threads, user_api="blas")
    except ImportError:
        pass
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass


def loglog_slope(sizes: list[int], seconds: list[float]) -> float:
    """k in seconds ~ size^k, least squares on logarithms: 1 for linear time."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="rounds for the dense group (default 9)")
    parser.add_argument("--hvp-repeat", type=int, default=25, help="rounds for the hvp group (default 25)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "reductions.md")
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    header = machine(args.threads)

    backends = [Backend("numpy")]
    try:
        backends.append(Backend("torch"))
    except ImportError:
        print("torch is not installed: the torch rows are skipped")

    target_elements = TARGET[0] * TARGET[1]
    target_entries = TARGET[0] * TARGET[1] ** 2
    largest = HESSIAN_SIZES[-1]

    # Two groups, each timed round-robin on data made beforehand and freed afterwards: the hvp at
    # the large sizes, then the dense blocks (and hvp, blocks @ v) at the small ones, so that the
    # blocks' large allocations do not disturb the hvp timings.
    hvp_calls = {}
    for b in backends:
        for n, c in HVP_SIZES:
            y, z, v = (b.array(a) for a in data(n, c))
            hvp_calls[("hvp", b.name, n, c)] = lambda b=b, y=y, z=z, v=v: b.mod.hvp(y, z, v)
    print(f"timing hvp: {len(hvp_calls)} calls, {args.hvp_repeat} rounds ...")
    records = time_round_robin(hvp_calls, args.hvp_repeat)
    del hvp_calls

    dense_calls, checks = {}, []
    for b in backends:
        for n, c in HESSIAN_SIZES:
            y, z, v = (b.array(a) for a in data(n, c, seed=1))
            blocks = b.mod.hessian(y, z)
            product, direct = b.einsum(blocks, v), b.mod.hvp(y, z, v)
            checks.append(f"{b.name} {n} x {c}: max |hvp(v) - blocks @ v| = "
                          f"{float(np.max(np.abs(b.numpy(direct) - b.numpy(product)))):.1e}")
            dense_calls[("hessian", b.name, n, c)] = lambda b=b, y=y, z=z: b.mod.hessian(y, z)
            dense_calls[("blocks @ v", b.name, n, c)] = lambda b=b, blocks=blocks, v=v: b.einsum(blocks, v)
            dense_calls[("hvp small", b.name, n, c)] = lambda b=b, y=y, z=z, v=v: b.mod.hvp(y, z, v)
    print(f"timing hessian: {len(dense_calls)} calls, {args.repeat} rounds ...")
    records.update(time_round_robin(dense_calls, args.repeat))
    del dense_calls, blocks
    median = {key: float(np.median(r[:, 0])) for key, r in records.items()}
    best = {key: float(np.min(r[:, 0])) for key, r in records.items()}
    user = {key: float(np.median(r[:, 1])) for key, r in records.items()}
    system = {key: float(np.median(r[:, 2])) for key, r in records.items()}

    hvp_rows, hessian_rows, summary = [], [], []
    for b in backends:
        for n, c in HVP_SIZES:
            key = ("hvp", b.name, n, c)
            hvp_rows.append((b.name, n, c, median[key], best[key],
                             *(d[key] / (n * c) * 1e9 for d in (median, best, user, system))))
        for n, c in HESSIAN_SIZES:
            h, mv, hv = (("hessian", b.name, n, c), ("blocks @ v", b.name, n, c), ("hvp small", b.name, n, c))
            hessian_rows.append((b.name, n, c, median[h], best[h], median[h] / (n * c * c) * 1e9, median[mv],
                                 median[hv], median[h] / median[hv]))
        hvp_keys = [("hvp", b.name, n, c) for n, c in HVP_SIZES]
        sizes = [n * c for n, c in HVP_SIZES]
        per_element = {stat: [d[k] / e for k, e in zip(hvp_keys, sizes)] for stat, d in (("median", median),
                                                                                      ("user", user))}
        hvp_target = median[("hvp", b.name) + TARGET]
        h_key = ("hessian", b.name) + largest
        hessian_target = median[h_key] / (largest[0] * largest[1] ** 2) * target_entries
        matvec_target = median[("blocks @ v", b.name) + largest] / (largest[0] * largest[1] ** 2) * target_entries
        summary.append((b.name, hvp_target,
                        loglog_slope(sizes, [median[k] for k in hvp_keys]),
                        loglog_slope(sizes, [user[k] for k in hvp_keys]),
                        per_element["median"][-1] / per_element["median"][0],
                        per_element["user"][-1] / per_element["user"][0],
                        per_element["user"][-1] / per_element["user"][-2],
                        hessian_target,
                        loglog_slope([n * c * c for n, c in HESSIAN_SIZES],
                                     [median[("hessian", b.name, n, c)] for n, c in HESSIAN_SIZES]),
                        matvec_target, hessian_target / hvp_target, (hessian_target + matvec_target) / hvp_target,
                        (user[h_key] + system[h_key]) / (largest[0] * largest[1] ** 2) * target_entries
                        / (user[("hvp", b.name) + TARGET] + system[("hvp", b.name) + TARGET])))

    load_after = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    header.append(f"- load average after the run: {load_after}")
    n_t, c_t = TARGET
    dense_gb = target_entries * 8 / 1e9
    text = [
        f"# softmax_ce: hvp against the dense Hessian blocks (float64, CPU, {args.threads} "
        f"thread{'s' if args.threads != 1 else ''})",
        "",
        "Command: `python benchmarks/reductions.py"
        + (f" --repeat {args.repeat}" if args.repeat != 9 else "")
        + (f" --hvp-repeat {args.hvp_repeat}" if args.hvp_repeat != 25 else "")
        + (f" --threads {args.threads}" if args.threads != 1 else "")
        + f"`: every call warmed up once, then rounds that time each call of a group once, in turn, so "
        f"that a change in the machine's load hits all rows alike ({args.hvp_repeat} rounds for the hvp "
        f"group, {args.repeat} for the dense group; hvp first, then the dense sizes).",
        "",
        *header,
        "",
        "## hvp: time per element",
        "",
        "| backend | N | C | elements | wall median s | wall best s | ns per element: wall median | wall best "
        "| user CPU median | system CPU median |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {name} | {n} | {c} | {n * c:.0e} | {med:.4f} | {bst:.4f} | {ns:.1f} | {ns_best:.1f} | {ns_user:.1f} "
          f"| {ns_sys:.1f} |"
          for name, n, c, med, bst, ns, ns_best, ns_user, ns_sys in hvp_rows),
        "",
        "User CPU time is the arithmetic of hvp; system CPU time is mostly the kernel handing out fresh "
        "zeroed pages for hvp's large temporaries (glibc maps blocks above its mmap threshold, at most "
        "32 MiB, afresh and unmaps them on free; torch's CPU allocator keeps no cache); wall time minus "
        "both is time spent waiting for a CPU on a shared machine. The user time per element is the "
        "measure of the formula's work.",
        "",
        "## hessian: dense (N, C, C) blocks, O(N C^2)",
        "",
        "| backend | N | C | Hessian entries | hessian median s | best s | ns per entry (median) "
        "| blocks @ v median s | hvp median s (same size) | hessian / hvp |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {name} | {n} | {c} | {n * c * c:.0e} | {med:.4f} | {bst:.4f} | {ns:.1f} | {mv:.4f} | {hv:.5f} "
          f"| {ratio:.0f} |"
          for name, n, c, med, bst, ns, mv, hv, ratio in hessian_rows),
        "",
        f"## At {n_t} x {c_t}: hvp measured, dense blocks extrapolated per entry",
        "",
        f"The dense blocks at {n_t} x {c_t} hold {target_entries:.0e} entries, {dense_gb:.0f} GB in float64: "
        f"more than this machine's RAM. Their time is extrapolated from the largest measured size "
        f"({largest[0]} x {largest[1]}) at its median time per entry (wall; the last column uses user + system "
        f"CPU time instead, which waiting for a CPU does not inflate). k is the exponent of a least-squares "
        f"fit time ~ size^k over the three hvp sizes (1 = linear), on the wall time and on the user CPU time; "
        f"C {HVP_SIZES[-1][1]} : {HVP_SIZES[0][1]} and C {HVP_SIZES[-1][1]} : {HVP_SIZES[1][1]} are ratios of "
        f"ns per element (1 = linear).",
        "",
        f"| backend | hvp wall median s | hvp k (wall) | hvp k (user CPU) | C {HVP_SIZES[-1][1]} : {HVP_SIZES[0][1]} (wall) "
        f"| C {HVP_SIZES[-1][1]} : {HVP_SIZES[0][1]} (user CPU) | C {HVP_SIZES[-1][1]} : {HVP_SIZES[1][1]} (user CPU) "
        "| hessian s (extrap.) | hessian k | blocks @ v s (extrap.) | hessian / hvp | (hessian + blocks @ v) / hvp "
        "| hessian / hvp (CPU time) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {name} | {hvp_t:.3f} | {k:.2f} | {k_user:.2f} | {flat:.2f} | {flat_user:.2f} | {flat2_user:.2f} "
          f"| {hess_t:.0f} | {hk:.2f} | {mv_t:.1f} | {r1:.0f} | {r2:.0f} | {r3:.0f} |"
          for name, hvp_t, k, k_user, flat, flat_user, flat2_user, hess_t, hk, mv_t, r1, r2, r3 in summary),
        "",
        "Checks (the same product two ways, at each dense size):",
        "",
        *(f"- {line}" for line in checks),
        "",
    ]
    output = "\n".join(text)
    print(output)
    args.out.write_text(output)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
