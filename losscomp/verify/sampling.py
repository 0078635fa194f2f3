"""Inputs for checking a loss: random points per domain, edge points and points on the kinks, shaped
as the definition's arguments say.

Every argument is a tensor, batch first. An elementwise loss gets arrays of shape (batch, width)
(width != batch, so that reducing over the wrong axis shows in the shape of the result); a unit of
comparison is one element. A loss that reduces per sample gets rows: `onehot` and `simplex` arguments
are rows of one-hot vectors and of probabilities, `index` labels have one axis fewer; a unit is one
row, or the whole batch when a reduction runs over `axis=all`.

Three kinds of points, in this order:
  kink   exactly on a kink (and 2^-30 to either side), where conventions differ;
  edge   domain boundaries and extremes: 0, +-1e-8, ..., +-1e5; 1e-300 and 1 - 2^-52 for probabilities;
  bulk   random, from mixtures of scales, with real arguments near one another half of the time
         (a residual y - y_pred is then small, where Huber and pinball change branch).
All randomness comes from one seeded generator.
"""

from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass, field

import numpy as np

from . import kinks

ORIGINS = ("bulk", "edge", "kink")
EDGE_LIMIT = 4096
# the most points `check` and `verify` take (module attributes: raise them for one run). check
# evaluates in NumPy, about 200 MB at 10^6 points; verify adds 50-digit mpmath, about 1 ms a point.
MAX_CHECK_POINTS = 1_000_000
MAX_VERIFY_POINTS = 100_000

EDGES: dict[str, tuple[float, ...]] = {
    "real": (0.0, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 40.0, -40.0, 800.0, -800.0, 1e5, -1e5),
    "positive": (1e-300, 1e-20, 1e-8, 0.5, 1.0, 3.0, 40.0, 1e8, 1e20),
    "nonnegative": (0.0, 1e-300, 1e-20, 1e-8, 0.5, 1.0, 3.0, 40.0, 1e8, 1e20),
    "unit": (1e-300, 1e-20, 1e-10, 1e-5, 0.25, 0.5, 0.75, 1 - 1e-5, 1 - 1e-10, 1 - 2.0 ** -52),
    "binary": (0.0, 1.0),
    "sign": (-1.0, 1.0),
    "count": (0.0, 1.0, 2.0, 7.0, 1e4),
}
ROW_DOMAINS = ("onehot", "simplex", "index")


def _mixture(rng: np.random.Generator, n: int) -> np.ndarray:
    """Standard normal, wider normals and a uniform band: most mass near 0, some far out."""
    which = rng.choice(4, size=n, p=[0.4, 0.3, 0.2, 0.1])
    scales = np.array([1.0, 3.0, 1.5, 30.0])[which]
    x = rng.normal(size=n) * scales
    uniform = which == 2
    x[uniform] = rng.uniform(-1.5, 1.5, size=int(uniform.sum()))
    return x


def bulk(domain: str, n: int, rng: np.random.Generator, near: np.ndarray | None = None) -> np.ndarray:
    """n random values of an elementwise domain; real values near `near` half of the time."""
    if domain == "real":
        x = _mixture(rng, n)
        if near is not None:
            close = rng.random(n) < 0.5
            x[close] = near[close] + rng.normal(size=int(close.sum())) * rng.choice([0.1, 1.0, 3.0], int(close.sum()))
        return x
    if domain in ("positive", "nonnegative"):
        x = np.exp(rng.normal(scale=1.5, size=n))
        if domain == "nonnegative":
            x[rng.random(n) < 0.05] = 0.0
        return x
    if domain == "unit":
        z = rng.normal(scale=2.5, size=n)
        return np.clip(1 / (1 + np.exp(-z)), 1e-300, 1 - 2.0 ** -53)
    if domain == "binary":
        return rng.integers(0, 2, size=n).astype(np.float64)
    if domain == "sign":
        return rng.choice([-1.0, 1.0], size=n)
    if domain == "count":
        return rng.poisson(np.exp(rng.normal(scale=1.2, size=n))).astype(np.float64)
    raise ValueError(f"no elementwise sampler for domain '{domain}'")


def _rows(domain: str, rows: int, width: int, rng: np.random.Generator, edge: bool = False) -> np.ndarray:
    labels = rng.integers(0, width, size=rows)
    if domain == "index":
        return labels.astype(np.int64)
    if domain == "onehot":
        return np.eye(width)[labels]
    # simplex: Dirichlet rows, strictly inside (log p stays finite); edge rows put 1e-20 .. 1e-5 on all but one
    if edge:
        tiny = rng.choice([1e-20, 1e-10, 1e-5], size=(rows, 1))
        p = np.full((rows, width), 1.0) * tiny
        p[np.arange(rows), labels] = 1 - tiny[:, 0] * (width - 1)
        return p
    p = rng.gamma(rng.choice([0.3, 1.0, 3.0], size=(rows, 1)), size=(rows, width)) + 1e-12
    return p / p.sum(axis=1, keepdims=True)


@dataclass
class Sample:
    """Inputs for one loss: `columns[name]` has one entry per unit along its first axis."""

    unit: str                         # 'element', 'sample' or 'batch'
    width: int
    columns: dict[str, np.ndarray]
    origin: np.ndarray                # per unit: index into ORIGINS
    domains: dict[str, str]
    flat: bool = False                # elementwise inputs passed as 1-D arrays (a fallback)
    parameters: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.origin)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.columns)

    def inputs(self, columns: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Arrays in the shapes the loss takes: (batch, width) elements, or the rows as they are."""
        columns = self.columns if columns is None else columns
        if self.unit != "element":
            return dict(columns)
        n = len(next(iter(columns.values())))
        if self.flat or n % self.width:
            return {k: v.reshape(-1) for k, v in columns.items()}
        return {k: v.reshape(n // self.width, self.width) for k, v in columns.items()}

    def take(self, units: np.ndarray) -> "Sample":
        units = np.asarray(units)
        return Sample(self.unit, self.width, {k: v[units] for k, v in self.columns.items()},
                      self.origin[units], self.domains, self.flat, self.parameters)

    def unit_inputs(self, index: int) -> dict[str, np.ndarray]:
        """One unit as a batch of its own: an element as shape (1, 1) (or (1,) when flat), a row as (1, ...)."""
        if self.unit == "element":
            shape = (1,) if self.flat else (1, 1)
            return {k: v[index:index + 1].reshape(shape) for k, v in self.columns.items()}
        return {k: v[index:index + 1] for k, v in self.columns.items()}

    def replaced(self, units: np.ndarray, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Columns with the given units overwritten (the rest of the batch unchanged, so N stays N)."""
        columns = {k: v.copy() for k, v in self.columns.items()}
        for name, v in values.items():
            columns[name][units] = v
        return columns


def unit_of(loss) -> str:
    """'element' for an elementwise loss; 'batch' if it reduces over axis=all; else 'sample'."""
    reductions = [r for r in getattr(loss.definition, "reductions", ()) if r.kind != "count"]
    if not reductions:
        return "element"
    return "batch" if any(r.axis == "all" for r in reductions) else "sample"


def _edge_points(domains: dict[str, str], rng: np.random.Generator, limit: int = EDGE_LIMIT) -> dict[str, np.ndarray]:
    names = [n for n, d in domains.items() if d not in ROW_DOMAINS]
    if not names:
        return {}
    lists = [EDGES[domains[n]] for n in names]
    total = int(np.prod([len(values) for values in lists]))
    if total <= limit:
        combos = np.array(list(itertools.product(*lists)), dtype=np.float64).reshape(total, len(names))
    else:
        combos = np.stack([rng.choice(np.asarray(values), size=limit) for values in lists], axis=1)
    return {n: combos[:, i] for i, n in enumerate(names)}


def _bulk_columns(domains: dict[str, str], n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out, first_real = {}, None
    for name, domain in domains.items():
        if domain in ROW_DOMAINS:
            continue
        out[name] = bulk(domain, n, rng, near=first_real if domain == "real" else None)
        if domain == "real" and first_real is None:
            first_real = out[name]
    return out


def sample_options(points: object, seed: object, limit: int, command: str) -> tuple[int, int]:
    """`points` and `seed` as given to check or verify: 1 <= points <= `limit`, seed a non-negative integer."""
    from ..errors import LossOptionError

    if isinstance(points, bool) or not isinstance(points, numbers.Integral) or not 1 <= points <= limit:
        raise LossOptionError(f"{command}: points must be an integer from 1 to {limit:,}, not {points!r} (the "
                              f"limit is losscomp.verify.sampling.MAX_{command.upper()}_POINTS)")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise LossOptionError(f"{command}: seed must be a non-negative integer, not {seed!r}")
    return int(points), int(seed)


def sample(loss, n: int = 20_000, seed: int = 0, *, width: int = 4, edges: bool = True,
           kink_points: bool = True, edge_limit: int = EDGE_LIMIT) -> Sample:
    """About `n` elements of inputs for `loss` (a CompiledLoss): kink, edge and bulk points (all
    combinations of the arguments' edge values, or `edge_limit` random ones of them)."""
    rng = np.random.default_rng(seed)
    domains = {a.name: a.domain for a in loss.definition.arguments}
    parameters = {p.name: float(p.default) for p in loss.definition.parameters}
    unit = unit_of(loss)
    if unit == "element" and any(d in ROW_DOMAINS for d in domains.values()):
        unit = "sample"  # one-hot rows and labels come by the row
    parts: list[tuple[int, dict[str, np.ndarray]]] = []
    if kink_points:
        parts.append((2, {k: v for k, v in kinks.kink_points(loss, rng).items() if domains[k] not in ROW_DOMAINS}))
    if edges:
        parts.append((1, _edge_points(domains, rng, min(edge_limit, max(n // 2, 64)))))
    elementwise = [name for name, d in domains.items() if d not in ROW_DOMAINS]
    counted = sum(len(next(iter(p.values()))) for _, p in parts if p and elementwise)
    if unit == "element":
        rest = max(n - counted, n // 2, width)
        rest += (-(counted + rest)) % width
        parts.append((0, _bulk_columns(domains, rest, rng)))
        columns = {k: np.concatenate([p[k] for _, p in parts if p]) for k in domains}
        origin = np.concatenate([np.full(len(next(iter(p.values()))), o, dtype=np.int8) for o, p in parts if p])
        return Sample(unit, width, columns, origin, domains, parameters=parameters)
    # rows: elementwise-domain values fill rows of `width`; row domains are drawn per row
    special = {k: np.concatenate([np.zeros(0)] + [p[k] for _, p in parts if p]) for k in elementwise}
    special_rows = -(-counted // width) if counted else 0
    if edges and "simplex" in domains.values():
        special_rows = max(special_rows, 16)
    bulk_rows = max(n // width - special_rows, n // (2 * width), 8)
    total_rows = special_rows + bulk_rows
    fill = _bulk_columns(domains, special_rows * width - counted + bulk_rows * width, rng)
    columns = {}
    for name in domains:
        if domains[name] in ROW_DOMAINS:
            columns[name] = np.concatenate([_rows(domains[name], special_rows, width, rng, edge=True),
                                            _rows(domains[name], bulk_rows, width, rng)])
        else:
            columns[name] = np.concatenate([special[name], fill[name]]).reshape(total_rows, width)
    origin = np.concatenate([np.full(special_rows, 1, np.int8), np.zeros(bulk_rows, np.int8)])
    return Sample(unit, width, columns, origin, domains, parameters=parameters)
