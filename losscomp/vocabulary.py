"""The one table of names the loss language knows: functions (arity, SymPy constructor, doc) and domains."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from .functions import clip, relu, sigmoid, softplus


@dataclass(frozen=True)
class FunctionSpec:
    """An elementwise function: how many arguments it takes and how to build its SymPy form."""

    name: str
    min_args: int
    max_args: int | None  # None: any number
    build: Callable[[Sequence[sympy.Expr]], sympy.Expr]
    doc: str

    def arity_text(self) -> str:
        if self.max_args is None:
            return f"at least {self.min_args} arguments"
        if self.min_args == self.max_args:
            return f"{self.min_args} argument" + ("s" if self.min_args != 1 else "")
        return f"{self.min_args} to {self.max_args} arguments"


def _unary(name: str, constructor, doc: str) -> FunctionSpec:
    return FunctionSpec(name, 1, 1, lambda a: constructor(a[0]), doc)


FUNCTIONS: dict[str, FunctionSpec] = {spec.name: spec for spec in (
    _unary("abs", sympy.Abs, "|x|; abs'(0) = 0"),
    _unary("sign", sympy.sign, "-1, 0 or 1"),
    _unary("exp", sympy.exp, "e^x"),
    _unary("log", sympy.log, "natural logarithm"),
    _unary("log1p", log1p, "log(1 + x), accurate for small x"),
    _unary("expm1", expm1, "exp(x) - 1, accurate for small x"),
    _unary("sqrt", sympy.sqrt, "square root"),
    _unary("sin", sympy.sin, "sine"),
    _unary("cos", sympy.cos, "cosine"),
    _unary("tanh", sympy.tanh, "hyperbolic tangent"),
    _unary("sinh", sympy.sinh, "hyperbolic sine"),
    _unary("cosh", sympy.cosh, "hyperbolic cosine"),
    _unary("sigmoid", sigmoid, "1 / (1 + exp(-x))"),
    _unary("softplus", softplus, "log(1 + exp(x))"),
    _unary("log_sigmoid", lambda x: -softplus(-x), "log(sigmoid(x)) = -softplus(-x)"),
    _unary("relu", relu, "max(x, 0); relu'(0) = 0"),
    _unary("erf", sympy.erf, "error function"),
    _unary("lgamma", sympy.loggamma, "log |Gamma(x)|"),
    FunctionSpec("clip", 3, 3, lambda a: clip(*a), "clip(x, lo, hi); the gradient passes at the bounds"),
    FunctionSpec("min", 2, None, lambda a: sympy.Min(*a), "smallest argument; ties split the gradient"),
    FunctionSpec("max", 2, None, lambda a: sympy.Max(*a), "largest argument; ties split the gradient"),
)}

@dataclass(frozen=True)
class ReductionSpec:
    """A function over the per-sample axes (or `axis=-1`, `axis=all`); `ir` lowers it to reductions."""

    name: str
    arity: int
    doc: str


REDUCTIONS: dict[str, ReductionSpec] = {spec.name: spec for spec in (
    ReductionSpec("sum", 1, "sum over the per-sample axes"),
    ReductionSpec("mean", 1, "mean over the per-sample axes"),
    ReductionSpec("logsumexp", 1, "log(sum(exp(x))), shifted by the max"),
    ReductionSpec("norm", 1, "sqrt(sum(x^2))"),
    ReductionSpec("dot", 2, "sum(a * b)"),
    ReductionSpec("softmax", 1, "exp(x - logsumexp(x)), vector-valued"),
    ReductionSpec("log_softmax", 1, "x - logsumexp(x), vector-valued"),
    ReductionSpec("onehot", 1, "index labels y -> one-hot rows against the scores' class axis"),
)}

CONSTANTS: dict[str, sympy.Expr] = {"pi": sympy.pi}


@dataclass(frozen=True)
class Domain:
    """Which values an argument may take; `assumptions` feed SymPy, the rest feeds samplers and messages."""

    name: str
    assumptions: tuple[tuple[str, bool], ...]
    doc: str


DOMAINS: dict[str, Domain] = {d.name: d for d in (
    Domain("real", (("real", True),), "any real number"),
    Domain("positive", (("positive", True),), "x > 0"),
    Domain("nonnegative", (("nonnegative", True),), "x >= 0"),
    Domain("unit", (("positive", True),), "0 < x < 1 (a probability)"),
    Domain("binary", (("nonnegative", True),), "x in {0, 1}"),
    Domain("sign", (("real", True), ("nonzero", True)), "x in {-1, 1}"),
    Domain("onehot", (("nonnegative", True),), "one 1 per sample, zeros elsewhere"),
    Domain("simplex", (("nonnegative", True),), "nonnegative, summing to 1 per sample"),
    Domain("count", (("nonnegative", True),), "0, 1, 2, ..."),
    Domain("index", (("nonnegative", True), ("integer", True)), "integer class labels, one axis fewer than the scores"),
)}


# The domains a parameter (a scalar with a default) may declare: `delta: positive = 1`.
PARAMETER_DOMAINS = {name: DOMAINS[name] for name in ("real", "positive", "nonnegative", "unit")}

# Shape roles of arguments (DESIGN.md section 2): `w: positive[class]`.
ROLES = {
    "element": "the scores' shape; broadcasts NumPy-style against the other arguments of this role",
    "sample": "one value per sample, shape (N,), aligned to the leading axis",
    "class": "one value per entry of the last axis, shape (C,), shared by every sample",
}


def known_names() -> list[str]:
    """Every function and constant name, for 'did you mean' suggestions."""
    return sorted(set(FUNCTIONS) | set(REDUCTIONS) | set(CONSTANTS))
