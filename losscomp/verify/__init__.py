"""Verification: is generated code right, and is a hand-written loss the one a formula defines?

    check(fn, against, kind)   a hand-written loss, gradient or Hessian against a formula -> Report
    verify(source)             every emitted function against 50-digit mpmath, differences, autodiff
    sample(loss, n)            inputs per domain: random, edge and kink points

Built from small parts that `tests` use too: `evaluate` (SymPy expressions on float64 or mpmath
arrays), `oracle` (50-digit values and derivatives), `kinks` (where a loss is not smooth),
`sampling`, `frameworks` (NumPy / PyTorch / TensorFlow), `diagnose` (verdict and diagnosis),
`regions` (a condition on the inputs) and `report`.
"""

from .check import check
from .emitted import verify
from .report import CODES, VERDICTS, CheckInputError, Comparison, Diagnosis, Report, Row, VerifyReport
from .sampling import Sample, sample

__all__ = ["CODES", "VERDICTS", "CheckInputError", "Comparison", "Diagnosis", "Report", "Row", "Sample",
           "VerifyReport", "check", "sample", "verify"]
