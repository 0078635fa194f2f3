"""One module per framework: a SymPy printer subclass, its helpers and its pieces of the module template.

SymPy's PyTorch and TensorFlow printer modules import their framework when they are imported, only to
read its version; losscomp pins the version it prints for, so it loads them with the framework hidden.
Emitting code then neither waits for (seconds) nor depends on the installed framework.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType


def sympy_printer_module(name: str, framework: str) -> ModuleType:
    """`sympy.printing.<name>`, imported without importing `framework` if it is not loaded yet."""
    if framework in sys.modules:
        return importlib.import_module(f"sympy.printing.{name}")
    sys.modules[framework] = None  # `import framework` now fails, and SymPy's import_module returns None
    try:
        return importlib.import_module(f"sympy.printing.{name}")
    finally:
        if framework in sys.modules and sys.modules[framework] is None:
            del sys.modules[framework]
