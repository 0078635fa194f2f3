"""losscomp: a symbolic loss compiler.

Write a loss as mathematics; get its exact gradient and Hessian and standalone NumPy, PyTorch and
TensorFlow code for all three.
"""

__version__ = "0.1.0"

from .compiler import BACKENDS, REDUCTIONS, CompiledLoss, compile  # noqa: E402
from .errors import (  # noqa: E402
    LossDefinitionError,
    LossDerivationError,
    LossError,
    LossNameError,
    LossOptionError,
    LossSyntaxError,
)
from .fit import FitResult, NewtonNotApplicableError, fit_linear  # noqa: E402
from .verify import check  # noqa: E402

__all__ = [
    "BACKENDS",
    "REDUCTIONS",
    "CompiledLoss",
    "FitResult",
    "LossDefinitionError",
    "LossDerivationError",
    "LossError",
    "LossNameError",
    "LossOptionError",
    "LossSyntaxError",
    "NewtonNotApplicableError",
    "__version__",
    "check",
    "compile",
    "fit_linear",
]
