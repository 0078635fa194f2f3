"""Emitted source -> a live module, under a synthetic file name registered in `linecache`, so that
tracebacks and `inspect.getsource` show the generated code, and registered in `sys.modules`, so that
tools which look a class up by its module (torch.compile, pickle) find it."""

from __future__ import annotations

import hashlib
import linecache
import sys
import threading
import types

_LOADING = threading.Lock()  # CPython 3.11 compiles ASTs with a per-interpreter recursion counter


def load(source: str, name: str) -> types.ModuleType:
    """Execute generated module text (never user text: it is losscomp's own output) as a module."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    filename = f"<losscomp:{name}:{digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = types.ModuleType(f"losscomp_generated_{name}_{digest}")
    module.__file__ = filename
    sys.modules[module.__name__] = module
    with _LOADING:
        code = compile(source, filename, "exec")
        exec(code, module.__dict__)  # safe: runs only code that losscomp.emit generated, never user text
    return module
