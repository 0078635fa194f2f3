"""Write docs/stability.md: the stable rewrites with real before/after emitted NumPy lines, and what
the emitted code does on extreme inputs with and without the rewrite pass, against a 50-digit mpmath
reference; plus BCE on logits and softmax cross-entropy against torch.nn.functional.

    .venv/bin/python docs/stability_table.py            # about a minute on two cores

The inputs, the reference, the conditioning rule and the comparison are those of
tests/test_stability.py (tests/stability_harness.py), so the numbers here are the ones the tests hold.
"""

from __future__ import annotations

import datetime
import difflib
import math
import os
import platform
import re
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import mpmath  # noqa: E402
import numpy as np  # noqa: E402

import losscomp  # noqa: E402
import losscomp.stabilize as stabilize  # noqa: E402
import stability_harness as H  # noqa: E402

OUT = ROOT / "docs" / "stability.md"

# ---------------------------------------------------------------------------------------------
# (a) The rewrites, each with a source that triggers it
# ---------------------------------------------------------------------------------------------

# rule name -> (the docstring line of losscomp.stabilize it documents, example source, function
# whose emitted lines to show, one extreme input for the example, a quantity to evaluate there)
REWRITES = [
    ("log1p", "log(1 + x)", "log1p_naive(y, p) = log(1 + (y - p)^2)", "values",
     {"y": 0.0, "p": 1e-9}, ("loss",)),
    ("expm1", "exp(x) - 1", "expm1_naive(y, z) = (exp(z - y) - 1)^2", "values",
     {"y": 0.0, "z": 1e-9}, ("loss",)),
    ("sigmoid-from-exp", "1 / (1 + exp(-z))", "sq_sigmoid(y: binary, z) = (y - 1/(1 + exp(-z)))^2", "values",
     {"y": 1.0, "z": -800.0}, ("loss",)),
    ("softplus-from-log", "log(1 + exp(z))", "softplus_naive(y, z) = log(1 + exp(z)) - y*z", "values",
     {"y": 1.0, "z": 800.0}, ("loss",)),
    ("softplus-from-log1p", "log(1 + exp(z))", "softplus_log1p(y, z) = log1p(exp(z)) - y*z", "values",
     {"y": 1.0, "z": 800.0}, ("loss",)),
    ("log-sigmoid", "log(sigmoid(z))", "log_sigmoid_naive(y: binary, z) = -y*log(sigmoid(z))", "values",
     {"y": 1.0, "z": -800.0}, ("loss",)),
    ("one-minus-sigmoid + log-sigmoid", "log(1 - sigmoid(z))",
     "bce_naive(y: binary, z) = -(y*log(sigmoid(z)) + (1-y)*log(1-sigmoid(z)))", "values",
     {"y": 0.0, "z": 40.0}, ("loss",)),
    ("one-minus-sigmoid", "1 - sigmoid(z)", "bce_logits", "hessian", {"y": 0.0, "z": 40.0}, ("hess", "z", "z")),
    ("one-minus-two-sigmoid", "1 - 2 sigmoid(z)", "logcosh_softplus(y, p) = e + softplus(-2*e) - log(2) where e = p - y",
     "grad", {"y": 0.0, "p": 1e-9}, ("grad", "p")),
    ("xlogx", "x * log(x)", "kl_div", "values",
     {"p": [[1.0, 0.0, 0.0]], "q": [[0.5, 0.25, 0.25]]}, ("loss",)),
    ("logsumexp_reductions", "sum(exp(u))", "lse_naive(y: index, z) = log(sum(exp(z))) - sum(onehot(y)*z)",
     "values", {"y": [0], "z": [[800.0, 0.0, -800.0]]}, ("loss",)),
    ("guard", "guard(where(c, a, b))", "guard_demo(y, p: positive) = if p > 1 then log(p - 1) else p - 1",
     "values", {"y": 0.0, "p": 0.5}, ("loss",)),
    ("guard (sqrt at 0)", "guard(where(c, a, b))", "norm_demo(y, p) = sqrt(sum((y - p)^2))", "grad",
     {"y": [[1.0, 2.0]], "p": [[1.0, 2.0]]}, ("grad", "p")),
]


def _function(text: str, name: str) -> tuple[str, list[str]]:
    """The name and body of one emitted function ("values", the loss of every element, was "_elements")."""
    lines = text.splitlines()
    names = ("values", "_elements") if name == "values" else (name,)
    start = next(i for i, line in enumerate(lines) if any(line.startswith(f"def {n}(") for n in names))
    found = lines[start][4:lines[start].index("(")]
    body = []
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):
            break
        if line.strip() and not line.strip().startswith('"""'):
            body.append(line.rstrip())
    return found, body


def _evaluate(source: str, point: dict, quantity: tuple, rewrites: bool):
    compiled = losscomp.compile(source, reduction="none", rewrites=rewrites)
    mod = compiled.build("numpy")
    args = [np.asarray(point[a.name], dtype=np.int64 if a.domain == "index" else np.float64)
            for a in compiled.definition.arguments]
    with warnings.catch_warnings(record=True) as caught, np.errstate(all="warn", under="ignore"):
        warnings.simplefilter("always")
        if quantity[0] == "loss":
            value = mod.loss(*args)
        elif quantity[0] == "grad":
            value = mod.grad(*args)
        else:
            value = mod.hessian(*args)
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    return flat, sorted({str(w.message) for w in caught})


def _true(source: str, point: dict, quantity: tuple):
    compiled = losscomp.compile(source, reduction="none", rewrites=False)
    evaluator = H.ProgramEvaluator(compiled)
    big = max(float(np.abs(np.asarray(v, dtype=np.float64)).max()) for v in point.values())
    values = {a.name: (np.asarray(point[a.name], dtype=np.int64) if a.domain == "index"
                       else H._mp_array(np.asarray(point[a.name], dtype=np.float64)))
              for a in compiled.definition.arguments}
    dirs = {t: H._mp_array(np.ones(np.shape(point[t]))) for t in compiled.targets}
    with mpmath.workdps(80 + int(2 * big / math.log(10))):
        q = evaluator.quantities(values, dirs)[quantity]
    return [float(v) if abs(v) < 1e308 else float(mpmath.sign(v)) * math.inf for v in np.asarray(q).reshape(-1)]


def _fmt(values) -> str:
    return ", ".join(f"{v:.6g}" for v in values)


def rewrites_section() -> list[str]:
    doc = stabilize.__doc__
    named = {r.name for r in stabilize.RULES}
    covered = {n for entry in REWRITES for n in re.split(r" \+ ", entry[0])}
    missing = named - covered
    assert not missing, f"rules without an example here: {missing}"
    out = ["## Rewrites", "",
           "The rules of `losscomp.stabilize` (its docstring, quoted), each with a source that triggers it and the",
           "lines of the emitted NumPy function that change when it compiles with `rewrites=False` (-) and with",
           "the rewrite pass (+), then the value at one extreme input, both ways, against the mpmath value.", ""]
    for name, key, source, function, point, quantity in REWRITES:
        line = next((ln.strip() for ln in doc.splitlines() if ln.strip().startswith(key)), None)
        assert line is not None, f"{key!r} is no longer in losscomp.stabilize's docstring"
        function, before = _function(losscomp.compile(source, rewrites=False).emit("numpy"), function)
        _, after = _function(losscomp.compile(source).emit("numpy"), function)
        diff = [d for d in difflib.ndiff(before, after) if d[:1] in "-+"]
        assert diff, f"the example of {name} does not change the emitted code"
        b, bw = _evaluate(source, point, quantity, False)
        a, aw = _evaluate(source, point, quantity, True)
        true = _true(source, point, quantity)
        label = "/".join(quantity)
        out += [f"### {name}", "", f"`{line}`", "", f"Source: `{source}` (`{function}`)", "", "```diff",
                *[d.rstrip() for d in diff], "```", "",
                f"At {point}: {label} without the pass {_fmt(b)}"
                + (f" (NumPy: {'; '.join(bw)})" if bw else "")
                + f"; with it {_fmt(a)}" + (f" (NumPy: {'; '.join(aw)})" if aw else "")
                + f"; mpmath {_fmt(true)}.", ""]
    out += ["`sqrt` and norms (canonical.py, not a rewrite rule): `root` prints as `np.sqrt`, and its derivative",
            "has the subgradient 0 at 0; the guard keeps `1/sqrt(0)` from being evaluated in the branch thrown away.",
            ""]
    return out


# ---------------------------------------------------------------------------------------------
# (b) With and without the rewrite pass, on the extremes
# ---------------------------------------------------------------------------------------------

def _in_domain_warnings(name: str, dtype: str, rewrites: bool, ref) -> list[str]:
    exempt = set()
    for key, v in ref.values.items():
        exempt |= set(ref.unit_of[key][~(np.abs(v) <= H.HUGE[dtype])].tolist())
    units = [u for u in range(H.units(name, dtype)) if u not in exempt]
    if not units:
        return []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        H.emitted(name, "numpy", dtype, rewrites,
                  subset=None if H.case(name).batch_coupled else np.array(units))
    return sorted({str(w.message) for w in caught})


def measure(name: str, dtype: str, rewrites: bool) -> dict:
    ref = H.reference(name, dtype)
    per_backend = {}
    for backend in H.BACKENDS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                got = H.emitted(name, backend, dtype, rewrites)
        per_backend[backend] = H.compare(ref, got, dtype)
    counts = {k: max(c.counts[k] for c in per_backend.values()) for k in ("loss", "grad", "hess", "hvp")}
    worst = max(max(c.worst.values()) for c in per_backend.values())
    differ = len({tuple(c.counts.values()) for c in per_backend.values()}) > 1
    known = sum(1 for f in per_backend["numpy"].findings if H.explain(f, name, dtype))
    bad = sum(1 for f in per_backend["numpy"].findings if f.kind in ("inaccurate", "nonfinite"))
    return {"counts": counts, "worst": worst, "differ": differ, "checked": per_backend["numpy"].checked,
            "ill": per_backend["numpy"].ill_conditioned, "exempt": per_backend["numpy"].exempt,
            "warnings": _in_domain_warnings(name, dtype, rewrites, ref), "failures": bad, "known": known,
            "digits": int(ref.digits.max()), "unresolved": len(ref.unresolved)}


def _cell(m: dict) -> str:
    c = m["counts"]
    nonfinite = f"{c['loss']}/{c['grad']}/{c['hess'] + c['hvp']}"
    worst = "0" if m["worst"] == 0 else f"{m['worst']:.1e}"
    return f"{nonfinite} | {worst} | {len(m['warnings'])}"


def table_section(results: dict, names: list[str], title: str) -> list[str]:
    out = [f"### {title}", "",
           "| loss | dtype | entries | ill-cond. | exempt | without: inf/NaN L/G/H | worst rel. err | NumPy warnings | "
           "with: inf/NaN L/G/H | worst rel. err | NumPy warnings | failing with (known) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        for dtype in H.DTYPES:
            off, on = results[(name, dtype, False)], results[(name, dtype, True)]
            flag = " †" if off["differ"] or on["differ"] else ""
            out.append(f"| {name}{flag} | {dtype} | {on['checked']} | {on['ill']} | {on['exempt']} | {_cell(off)} | "
                       f"{_cell(on)} | {on['failures']} ({on['known']}) |")
    return out + [""]


# ---------------------------------------------------------------------------------------------
# BCE on logits and softmax cross-entropy against PyTorch
# ---------------------------------------------------------------------------------------------

LESS_ACCURATE: list[tuple] = []   # (loss, dtype, quantity, entries, ours worst, torch worst), torch backend


def torch_section() -> list[str]:
    out = ["## BCE on logits and softmax cross-entropy against PyTorch", "",
           "Worst relative error against the mpmath reference over the well-conditioned entries (rtol kappa < 1,",
           "true value above the dtype's smallest normal number) of the extreme inputs, of the emitted code on",
           "each backend and of PyTorch's built-in (autograd for its gradient and Hessian); then, over all",
           "entries, how often the emitted code (torch backend) is more accurate than PyTorch's and how often",
           "less, by more than four units of rounding of the true value. The last two columns leave out the",
           "entries whose true value is below u max(1, |z|) of their row, where a cancellation of O(|z|) terms",
           "leaves both nothing (KNOWN softmax-dominant-class; PyTorch's BCE at z = -40).", "",
           "| loss | dtype | quantity | emitted numpy | emitted torch | emitted tensorflow | torch.nn.functional | "
           "more accurate | less accurate | entries | emitted torch, outside | torch.nn.functional, outside |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, builtin in H.TORCH_PAIRS.items():
        for dtype in H.DTYPES:
            ref = H.reference(name, dtype)
            theirs = H.torch_builtin(name, dtype)
            u = H.UNIT_ROUNDOFF[dtype]
            for key in theirs:
                errors, worst = {}, {}
                for backend in H.BACKENDS:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        got = H.emitted(name, backend, dtype)
                    errors[backend], well = H.relative_errors(ref, got, key, dtype)
                    well = well & (np.abs(ref.values[key]) > H.TINY[dtype])
                    worst[backend] = errors[backend][well].max(initial=0.0)
                e_t, _ = H.relative_errors(ref, theirs, key, dtype)
                worst_t = e_t[well].max(initial=0.0)
                e_o = errors["torch"]
                better = int((e_t > e_o + 4 * u).sum())
                worse_mask = e_o > e_t + 4 * u
                worse = int(worse_mask.sum())
                if worse:
                    LESS_ACCURATE.append((name, dtype, "/".join(key), worse, float(e_o[worse_mask].max()),
                                          float(e_t[worse_mask].max())))
                cells = " | ".join(f"{worst[b]:.2g}" for b in H.BACKENDS)
                x = np.abs(np.asarray(H.inputs(name, dtype)["z"], dtype=np.float64))
                scale = np.maximum(1, x.reshape(len(x), -1).max(axis=1))
                scale = scale.reshape((-1,) + (1,) * (e_o.ndim - 1))
                outside = well & (np.abs(ref.values[key]) > u * scale)
                out.append(f"| {name} | {dtype} | {'/'.join(key)} | {cells} | {worst_t:.2g} | {better} | {worse} | "
                           f"{e_o.size} | {e_o[outside].max(initial=0):.2g} | {e_t[outside].max(initial=0):.2g} |")
    out += ["", "Built-ins: " + "; ".join(f"`{n}`: {b}" for n, b in H.TORCH_PAIRS.items()) + ".", ""]
    return out


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------

def _versions() -> str:
    import sympy
    import tensorflow as tf
    import torch

    return (f"Python {platform.python_version()}, NumPy {np.__version__}, PyTorch {torch.__version__}, "
            f"TensorFlow {tf.__version__}, SymPy {sympy.__version__}, mpmath {mpmath.__version__}, "
            f"losscomp {losscomp.__version__}")


def _code_state() -> str:
    """The commit the emitted code comes from (LOSSCOMP_COMMIT when run outside a checkout)."""
    import subprocess

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "losscomp"],
                               capture_output=True, text=True, check=True).stdout.split("\n")
        dirty = [line[3:] for line in dirty if line.strip()]
        return f"losscomp at commit {commit}" + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return f"losscomp at commit {os.environ.get('LOSSCOMP_COMMIT', 'unknown')} (an export of it)"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    started = time.time()
    catalog = losscomp.catalog.names()
    naive = list(H.NAIVE_SOURCES)
    now = datetime.datetime.now(datetime.timezone.utc)
    rewrite_lines = rewrites_section()
    results = {}
    for name in catalog + naive:
        for dtype in H.DTYPES:
            for rewrites in (False, True):
                results[(name, dtype, rewrites)] = measure(name, dtype, rewrites)
    lines = ["# Numerical stability of the emitted code", "",
             f"Generated by `docs/stability_table.py` on {now:%Y-%m-%d %H:%M} UTC, "
             f"on {platform.platform()} ({_cpu()}, {os.cpu_count()} CPUs); {_versions()}; {_code_state()}.", "",
             "## Method", "",
             "Inputs: the extremes of every argument's declared domain, as in `tests/test_stability.py`: reals",
             "and logits 0, +-1e-9, +-0.5, +-3, +-40, +-700, +-1e4 in float64 and 0, +-1e-9, +-0.5, +-3, +-17, +-40,",
             "+-80 in float32; probabilities 1e-7, 0.25, 0.5, 1 - 1e-7 and 1 - 2^-53 (float32: the nearest float32",
             "values, 1.0000000116860974e-07 and 1 - 2^-23, and 1 - 2^-24, the largest float32 below 1); variances",
             "1e-12, 0.7, 1e12; simplex rows with exact zeros and near-one entries (1 - 1e-7, 1e-7, 0); binary 0/1;",
             "sign +-1; counts 0, 1, 7, 1e6. Elementwise losses take the product grid of their arguments' values;",
             "per-sample losses rows of width 3 (at most 30); `dice` one batch of 4 x 3.", "",
             "Reference: the derivation as derived (`compile(..., rewrites=False)`: value, gradient, Hessian and",
             "hvp programs) at 60 significant digits or more with mpmath (`losscomp.verify.evaluate`), raised to",
             "60 + min(2 max|x|, 1500)/ln 10 digits where exponentials occur and further until the rewritten",
             "programs, evaluated the same way, agree to 1e-30 (the textbook `log(1 - sigmoid(1e4))` takes 4,400",
             "digits). Every unit resolved: " + ("yes" if all(r["unresolved"] == 0 for r in results.values()) else "NO")
             + f"; most digits used: {max(r['digits'] for r in results.values())}.", "",
             "Conditioning: for each quantity Q, s = sum_i |x_i dQ/dx_i| over the continuous inputs (labels,",
             "counts and parameters are exact), measured on the reference with relative perturbations of one unit",
             "roundoff of the dtype; kappa = s/|Q|. An entry must be within rtol max(|Q|, s) + (smallest normal)",
             "of Q, rtol = 1e-12 (float64) and 1e-5 (float32); it is *ill-conditioned*, and asks no relative",
             "accuracy, when rtol kappa >= 1. A true value beyond the dtype's range is exempt (poisson_nll's",
             "exp(1e4) in float64; gaussian_nll's (y - mu)^2/var^3 at var = 1e-12 in float32).", "",
             "Columns: *inf/NaN L/G/H* counts non-finite results where the true value is finite and",
             "representable, for the loss, the gradient and the Hessian (dense Hessian and hvp entries together),",
             f"the maximum over the backends ({', '.join(H.BACKENDS)}; † marks a loss where they differ);",
             "*worst rel. err* is the largest relative error over the well-conditioned entries whose result is",
             "finite (all backends); *NumPy warnings* the distinct RuntimeWarnings the emitted NumPy code raises",
             "inside the domain (NumPy's default error state; underflow is silent); *failing with (known)* the",
             "entries of the numpy backend that break the rule above with the rewrite pass, and how many of them",
             "`tests/stability_harness.KNOWN` explains (listed at the end; the tests tolerate those, within a",
             "bound).", "",
             *rewrite_lines,
             "## With and without the rewrite pass", "",
             *table_section(results, catalog, "Catalog losses"),
             *table_section(results, naive, "Textbook sources the rewrites must fix"),
             *headline(results, catalog, naive),
             *torch_section(),
             *known_section(results),
             f"_{sum(1 for _ in results)} measurements in {time.time() - started:.0f} s._", ""]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT.relative_to(ROOT)} in {time.time() - started:.0f} s")


def headline(results, catalog, naive) -> list[str]:
    def total(names, rewrites):
        return sum(sum(results[(n, d, rewrites)]["counts"].values()) for n in names for d in H.DTYPES)

    def warned(names, rewrites):
        return sum(1 for n in names for d in H.DTYPES if results[(n, d, rewrites)]["warnings"])

    def fixed(n):
        return all(sum(results[(n, d, True)]["counts"].values()) == 0 and not results[(n, d, True)]["warnings"]
                   for d in H.DTYPES)

    not_fixed = [n for n in naive if not fixed(n)]
    failing = {n: sum(results[(n, d, True)]["failures"] for d in H.DTYPES) for n in catalog}
    known = sum(results[(n, d, True)]["known"] for n in catalog for d in H.DTYPES)
    listed = ", ".join(f"{n} ({k})" for n, k in failing.items() if k)
    return ["### Headline", "",
            f"- Catalog, {len(catalog)} losses x 2 dtypes: {total(catalog, False)} inf/NaN without the rewrite pass, "
            f"{total(catalog, True)} with it; NumPy warnings inside the domain in {warned(catalog, False)} "
            f"(loss, dtype) pairs without, {warned(catalog, True)} with.",
            f"- Textbook sources, {len(naive)} x 2 dtypes: {total(naive, False)} inf/NaN without, {total(naive, True)} "
            f"with; still unstable with the pass: {', '.join(not_fixed) if not_fixed else 'none'}.",
            f"- Catalog entries (numpy backend, both dtypes) that break the accuracy rule with the pass: "
            f"{sum(failing.values())}, of which {known} are the KNOWN issues below: {listed or 'none'}.", ""]


def known_section(results) -> list[str]:
    out = ["## Known instabilities (tolerated by the tests only within a bound)", ""]
    for k in H.KNOWN:
        out += [f"- **{k.id}** ({', '.join(k.losses)}; {', '.join(k.quantities)}; {', '.join(k.dtypes)}): {k.summary} "
                f"*Fix:* {k.fix}"]
    where = "; ".join(f"{n} {d} {q}: {k} entries, worst {o:.2g} (torch {t:.2g})" for n, d, q, k, o, t in LESS_ACCURATE)
    out += ["- **softmax-lse-order**: a log-softmax printed as z - lse with lse = m + log(sum(exp(z - m))) rounded "
            "first carries an absolute error ~u max|z| where PyTorch's (z - m) - log(sum(exp(z - m))) has ~u |z - m| "
            "(before commit 8dd62ae split logsumexp into the max shift and the shifted log-sum-exp, the float64 "
            "softmax_ce loss at z = (1e4, 9999, -700) was off by 2.9e-12, PyTorch's by 1.8e-16). Entries less "
            "accurate than PyTorch now (torch backend, table above): " + (where or "none") + ".",
            "- **textbook sources** the pass leaves unstable: `softmax_naive` (the rewritten value still reads "
            f"`{_line('softmax_naive', 'values', 'np.log(')}`: SymPy does not merge the exponentials after "
            "`logsumexp_reductions`, so one overflows while the other underflows (inf * 0), and the gradient "
            f"carries the same product, `{_line('softmax_naive', 'grad', 'np.exp(t')}`; *fix:* combine exp(a)*exp(b) "
            "and take log(exp(u)) = u (powsimp / expand_log(force=True), valid for real arguments) right after "
            "`logsumexp_reductions`, before differentiating), `logcosh_naive` (no rule for log(cosh(x)): cosh "
            "overflows beyond |x| ~ 710 (float64) / 89 (float32), and 1 - tanh^2 cancels; *fix:* "
            "log(cosh x) -> |x| + softplus(-2|x|) - log 2, whose derivatives are tanh and 1 - tanh^2 = "
            "4 sigmoid(2x) sigmoid(-2x)), `kl_naive` (p*log(p/q) is not split, so 0*log(0) gives NaN at p = 0: "
            f"`{_line('kl_naive', 'values', 'np.log(')}`; *fix:* expand log(p/q) into log(p) - log(q) for p >= 0, "
            "q > 0 before the xlogx rule).", ""]
    return out


def _line(name: str, function: str, marker: str) -> str:
    """The first line of an emitted NumPy function (rewrites on) that contains `marker`."""
    _, body = _function(losscomp.compile(H.NAIVE_SOURCES[name]).emit("numpy"), function)
    return next((line.strip() for line in body if marker in line), "?")


if __name__ == "__main__":
    main()
