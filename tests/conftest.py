"""Shared fixtures: one cached module per (loss, backend, reduction, params), per-backend array
adapters, and a random generator seeded from the test's own id (never unseeded)."""

from __future__ import annotations

import functools
import os
import zlib

import numpy as np
import pytest

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) is noise in test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BACKENDS = ("numpy", "torch", "tensorflow")


@functools.lru_cache(maxsize=None)
def _compiled(source: str, reduction: str, params: tuple):
    import losscomp

    return losscomp.compile(source, reduction=reduction, params=dict(params) or None)


@functools.lru_cache(maxsize=None)
def _built(source: str, backend: str, reduction: str, params: tuple):
    return _compiled(source, reduction, params).build(backend)


@pytest.fixture(scope="session")
def build():
    """build(source, backend, reduction="mean", params=None): the generated module, built once per
    distinct (source, backend, reduction, params) for the whole run."""

    def get(source: str, backend: str, reduction: str = "mean", params=None):
        return _built(source, backend, reduction, tuple(sorted((params or {}).items())))

    return get


class Framework:
    """Moves numpy data into one backend and results back out."""

    def __init__(self, name: str):
        self.name = name
        if name == "torch":
            self.lib = pytest.importorskip("torch")
        elif name == "tensorflow":
            self.lib = pytest.importorskip("tensorflow")
        else:
            self.lib = np

    def tensor(self, x, dtype: str = "float64"):
        x = np.asarray(x, dtype=dtype)
        if self.name == "torch":
            return self.lib.tensor(x, dtype=getattr(self.lib, dtype))
        if self.name == "tensorflow":
            return self.lib.constant(x, dtype=getattr(self.lib, dtype))
        return x

    def numpy(self, x) -> np.ndarray:
        if self.name == "torch":
            return x.detach().cpu().numpy()
        if self.name == "tensorflow":
            return x.numpy()
        return np.asarray(x)

    def dtype(self, x) -> str:
        """'float32', 'float64', ... of a result, whatever the framework."""
        if self.name == "torch":
            return str(x.dtype).removeprefix("torch.")
        if self.name == "tensorflow":
            return x.dtype.name
        return np.asarray(x).dtype.name

    def shape(self, x) -> tuple:
        return tuple(int(n) for n in (x.shape if self.name != "numpy" else np.shape(x)))


@functools.lru_cache(maxsize=None)
def _framework(name: str) -> Framework:
    return Framework(name)


@pytest.fixture(scope="session")
def framework():
    """framework(name): the adapter for any backend, for tests that use several."""
    return _framework


@pytest.fixture
def fw(backend) -> Framework:
    """The adapter for the test's `backend` parameter."""
    return _framework(backend)


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test id: reproducible, and different for every parametrization."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


AUDITED: list[str] = []  # names of the emitted modules this run has audited


@pytest.fixture(scope="session", autouse=True)
def audit_emitted_modules():
    """Every module the test run loads passes the AST audit of `tests/emitted_audit.py` first."""
    from losscomp import runtime

    from emitted_audit import audit

    import threading

    load = runtime.load
    lock = threading.Lock()  # ast.parse is not safe in several threads at once on CPython 3.11

    def audited_load(source: str, name: str):
        with lock:
            audit(source)
            AUDITED.append(name)
        return load(source, name)

    runtime.load = audited_load
    yield
    runtime.load = load
