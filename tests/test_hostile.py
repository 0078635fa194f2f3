"""Hostile and careless input: source text and names are data, never code.

Every emitted module loaded in the test run also passes `emitted_audit.audit` (see conftest).
"""

from __future__ import annotations

import ast
import builtins
import subprocess
import sys

import numpy as np
import pytest

import losscomp
from emitted_audit import AuditError, audit

BACKENDS = ("numpy", "torch", "tensorflow", "jax")

# Each payload tries to end the string the source is embedded in and set a canary.
CANARY = "LOSSCOMP_CANARY"
PAYLOADS = [
    f'"""; import builtins; builtins.{CANARY} = 1; """',
    f"'''; import builtins; builtins.{CANARY} = 1; '''",
    f'\\"""; import builtins; builtins.{CANARY} = 1; """',
    f'"""\rimport builtins; builtins.{CANARY} = 1\r"""',
    f'"""\u2028import builtins; builtins.{CANARY} = 1\u2028"""',
    f'\\\\"""; import builtins; builtins.{CANARY} = 1 #',
    f'\x0c"""\x0bimport builtins\x85builtins.{CANARY} = 1"""',
]


@pytest.fixture(autouse=True)
def no_canary():
    if hasattr(builtins, CANARY):
        delattr(builtins, CANARY)
    yield
    assert not hasattr(builtins, CANARY), "text from a loss source ran as code"


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("form", ["bare", "definition", "second_line"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_comment_in_source_is_data(payload, form, backend):
    source = {"bare": f"(y - p)^2  # {payload}",
              "definition": f"f(y, p) = (y - p)^2  # {payload}",
              "second_line": f"# {payload}\nf(y, p) = (y - p)^2\n  # {payload}\n"}[form]
    loss = losscomp.compile(source)
    text = loss.emit(backend)
    audit(text)
    module = loss.build(backend)
    # the docstring holds the source text exactly as written (comments of a bare formula included)
    if form == "bare":
        assert source.strip() in module.__doc__


@pytest.mark.parametrize("payload", PAYLOADS)
def test_name_option_cannot_inject(payload):
    with pytest.raises(losscomp.LossOptionError, match="identifier"):
        losscomp.compile("(y - p)^2", name=f"x{payload}")


@pytest.mark.parametrize("params", [{"a b": 1.0}, {"tau\n": 1.0}, {"import": 1.0}, {"tau": float("nan")},
                                    {"tau": float("inf")}, {"tau": None}, {"tau": "0.5"}, {"tau": True}, {3: 1.0}])
def test_bare_params_are_checked(params):
    with pytest.raises(losscomp.LossOptionError):
        losscomp.compile("(y - tau*p)^2", params=params)


@pytest.mark.parametrize("name", ["import", "lambda", "class", "None", "True", "def", "return", "yield"])
@pytest.mark.parametrize("role", ["argument", "target", "parameter", "binding", "loss", "bare"])
def test_python_keywords_are_a_clear_error(name, role):
    source = {"argument": f"f({name}, p) = ({name} - p)^2",
              "target": f"f(y, {name}) = (y - {name})^2",
              "parameter": f"f(y, p; {name} = 1) = {name}*(y - p)^2",
              "binding": f"f(y, p) = {name}^2 where {name} = y - p",
              "loss": f"{name}(y, p) = (y - p)^2",
              "bare": f"({name} - p)^2"}[role]
    with pytest.raises(losscomp.LossSyntaxError, match="Python keyword") as error:
        losscomp.compile(source)
    assert "^" in str(error.value)  # the place is shown


def test_compiled_file_with_payload_imports_cleanly(tmp_path):
    """`losscomp compile -o` output imported as a module runs nothing from the source."""
    out = tmp_path / "injected.py"
    source = f"(y - p)^2  # {PAYLOADS[0]}"
    result = subprocess.run([sys.executable, "-m", "losscomp", "compile", source, "--wrt", "p", "-o", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    audit(out.read_text())
    check = subprocess.run([sys.executable, "-c", f"import runpy, builtins; runpy.run_path({str(out)!r}); "
                            f"print(hasattr(builtins, {CANARY!r}))"], capture_output=True, text=True, timeout=300)
    assert check.stdout.strip() == "False", check.stderr


def test_the_audit_can_fail():
    """The audit rejects what an injection would leave behind."""
    good = losscomp.compile("mse").emit("numpy")
    audit(good)
    for bad in ['"""doc"""\nimport os\n', '"""doc"""\nprint("x")\n', '"""doc"""\ndef f():\n    eval("1")\n',
                '"""doc"""\nimport numpy as np\nnp.__class__\n', good + "\nx = __import__('os')\n"]:
        with pytest.raises(AuditError):
            audit(bad)


def test_docstring_round_trips_every_character():
    """The header holds the source text exactly, whatever characters it has."""
    weird = "".join(chr(c) for c in range(1, 0x3000) if chr(c) not in "\n")
    text = "(y - p)^2 # " + weird.replace("\r", "")
    loss = losscomp.compile(text)
    module_doc = ast.get_docstring(ast.parse(loss.emit("numpy")), clean=False)
    assert "    " + text.strip() in module_doc
    assert np.isfinite(loss.build("numpy").loss(np.ones(3), np.zeros(3)))
