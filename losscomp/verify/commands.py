"""What `losscomp check` and `losscomp verify` do, behind the argument parsing in `losscomp.cli`.

`check MODULE:FUNCTION` imports MODULE (a dotted name found from the current directory, or a path to
a .py file) with importlib and takes FUNCTION from it (a dotted attribute path). A class is
instantiated with no arguments (an `nn.Module` or a Keras `Loss`); `FUNCTION()` calls a factory
with no arguments (`focal_loss()` returns the loss). Nothing the user typed is evaluated.

Exit codes: 0 agrees (also at kinks only), 1 differs or a failed verification, 2 bad input.
With --json, standard output holds exactly one JSON object, also on error; anything the user's
module prints goes to standard error.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Callable

from ..errors import LossError
from .report import CheckInputError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def load_function(spec: str) -> Callable:
    """MODULE:FUNCTION -> the callable (see the module docstring)."""
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        raise CheckInputError(f"expected MODULE:FUNCTION (e.g. mylosses:huber or path/to/file.py:huber), "
                              f"got {spec!r}")
    module = _import(module_name)
    call = attribute.endswith("()")
    path = attribute[:-2] if call else attribute
    obj = module
    for part in path.split("."):
        if not part.isidentifier():
            raise CheckInputError(f"{path!r} is not a dotted name")
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(obj) if not n.startswith("_")]
            from ..errors import did_you_mean

            raise CheckInputError(f"{module_name} has no attribute {part!r}{did_you_mean(part, names)}") from None
    if call or isinstance(obj, type):
        try:
            obj = obj()
        except Exception as error:  # noqa: BLE001 - the user's factory or constructor failed
            raise CheckInputError(f"{path}() raised {type(error).__name__}: {error}; a class or factory must "
                                  "work without arguments") from None
    if not callable(obj):
        raise CheckInputError(f"{module_name}:{path} is a {type(obj).__name__}, not a function")
    return obj


def _import(name: str):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if name.endswith(".py") or os.sep in name or "/" in name:
            path = Path(name)
            if not path.is_file():
                raise CheckInputError(f"no such file: {name}")
            return _import_file(path.resolve())
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(name)
    except CheckInputError:
        raise
    except BaseException as error:  # noqa: BLE001 - SyntaxError, ImportError, SystemExit from the user's module
        if isinstance(error, KeyboardInterrupt):
            raise
        raise CheckInputError(f"cannot import {name}: {type(error).__name__}: {error}") from None


def _import_file(path: Path):
    """A .py file as Python would import it: inside its package (folders with __init__.py), with
    the package's parent folder on sys.path; a lone file under a name of its own."""
    root, parts = path.parent, [path.stem]
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    sys.path.insert(0, str(root))
    try:
        if len(parts) > 1:
            return importlib.import_module(".".join(parts))
        unique = f"losscomp_checked_{path.stem}_{abs(hash(str(path))) % 10 ** 8}"
        spec = importlib.util.spec_from_file_location(unique, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module   # dataclasses and pickling look modules up by name
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(root))


def argument_mapping(text: str | None) -> dict[str, str] | None:
    """`y_pred=input,y=target` -> {"y_pred": "input", "y": "target"}."""
    if text is None:
        return None
    mapping: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key.isidentifier() or not value.isidentifier():
            raise CheckInputError(f"--arguments takes FORMULA_ARGUMENT=PARAMETER pairs separated by commas, "
                                  f"e.g. y_pred=input,y=target; got {item.strip()!r}")
        if key in mapping:
            raise CheckInputError(f"--arguments names '{key}' twice")
        mapping[key] = value
    return mapping


def _emit_json(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload, allow_nan=False) + "\n")


def run_check(args, source: str) -> int:
    """`losscomp check`; `source` is the --against text (a file already read)."""
    from .check import check

    stdout = sys.stdout
    redirect = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with redirect:
            fn = load_function(args.function)
            wrt = args.wrt[0] if args.wrt and len(args.wrt) == 1 else args.wrt
            mapping = argument_mapping(getattr(args, "arguments", None))
            report = check(fn, against=source, kind=args.kind, framework=args.framework, wrt=wrt,
                           name=args.name, params=args.params, reduction=args.reduction, points=args.points,
                           seed=args.seed, arguments=mapping)
    except LossError as error:
        if args.json:
            sys.stdout = stdout
            _emit_json({"error": str(error), "exit": EXIT_BAD_INPUT})
        print(f"losscomp: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        stdout.write(report.to_json() + "\n")
    else:
        print(report)
    return EXIT_OK if report.ok else EXIT_FAILED


def run_verify(args, source: str) -> int:
    """`losscomp verify`."""
    from .emitted import verify

    wrt = args.wrt[0] if args.wrt and len(args.wrt) == 1 else args.wrt
    try:
        report = verify(source, backends=args.backend, name=args.name, wrt=wrt, params=args.params,
                        reduction=args.reduction, points=args.points, seed=args.seed)
    except LossError as error:
        if args.json:
            _emit_json({"error": str(error), "exit": EXIT_BAD_INPUT})
        print(f"losscomp: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report.to_json() if args.json else report)
    return EXIT_OK if report.ok else EXIT_FAILED
