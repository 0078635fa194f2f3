"""losscomp: a symbolic loss compiler.

Write a loss as mathematics; get its exact gradient and Hessian and standalone NumPy, PyTorch and
TensorFlow code for all three.
"""

import importlib

from ._version import __version__
from .compiler import BACKENDS, REDUCTIONS, CompiledLoss, compile
from .errors import (
    LossDefinitionError,
    LossDerivationError,
    LossError,
    LossLimitError,
    LossNameError,
    LossOptionError,
    LossSyntaxError,
)

# Loaded on first use: they need NumPy (and, to check framework code, the framework); the compiler does not.
_LAZY = {"FitResult": ".fit", "NewtonNotApplicableError": ".fit", "fit_linear": ".fit", "check": ".verify"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'losscomp' has no attribute {name!r}")


__all__ = [
    "BACKENDS",
    "REDUCTIONS",
    "CompiledLoss",
    "FitResult",
    "LossDefinitionError",
    "LossDerivationError",
    "LossError",
    "LossLimitError",
    "LossNameError",
    "LossOptionError",
    "LossSyntaxError",
    "NewtonNotApplicableError",
    "__version__",
    "check",
    "compile",
    "fit_linear",
]
