"""The `losscomp` command: a thin shell over the Python API.

Exit codes: 0 success, 1 a failed check, 2 bad input (the message names the problem and the place).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ._version import __version__
from .errors import LossError, LossOptionError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def _read_source(text: str) -> str:
    """SOURCE is a file path (if such a file exists), else a formula or a catalog name."""
    path = Path(text)
    if text.endswith(".loss") or (len(text) < 4096 and "\n" not in text and path.suffix and path.is_file()):
        try:
            return path.read_text(encoding="utf-8")
        except OSError as error:
            raise LossOptionError(f"cannot read {text}: {error.strerror}") from None
    return text


def _params(items: Sequence[str] | None) -> dict[str, float] | None:
    if not items:
        return None
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise LossOptionError(f"--param {item!r}: expected NAME=NUMBER, e.g. --param tau=0.9")
        try:
            params[key] = float(value)
        except ValueError:
            raise LossOptionError(f"--param {item!r}: {value.strip()!r} is not a number") from None
    return params


def _compile(args):
    from .compiler import compile as compile_loss

    wrt = args.wrt[0] if args.wrt and len(args.wrt) == 1 else args.wrt
    return compile_loss(_read_source(args.source), name=args.name, wrt=wrt,
                        reduction=getattr(args, "reduction", "mean"), params=_params(args.param))


def _cmd_compile(args) -> int:
    text = _compile(args).emit(args.backend)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _cmd_derive(args) -> int:
    loss = _compile(args)
    if args.latex:
        print(loss.latex())
        return EXIT_OK
    lines = loss.describe()
    print(lines[0])
    for line in lines[1:]:
        print("  " + line.strip())
    return EXIT_OK


def _cmd_plot(args) -> int:
    from .plot import plot

    out = plot([_read_source(source) for source in args.sources], args.output, gradient=args.gradient,
               span=tuple(args.range), params=_params(args.param), title=args.title)
    print(f"wrote {out}", file=sys.stderr)
    return EXIT_OK


def _cmd_list(args) -> int:
    from . import catalog

    for entry in catalog.entries():
        d = entry.definition
        header = f"{d.name}({', '.join(a.name for a in d.arguments)}"
        if d.parameters:
            header += "; " + ", ".join(f"{p.name}={float(p.default):g}" for p in d.parameters)
        print(f"{header + ')':<42} {entry.description}")
    return EXIT_OK


def _cmd_verify(args) -> int:
    from .verify.commands import run_verify

    args.params = _params(args.param)
    return run_verify(args, _read_source(args.source))


def _cmd_check(args) -> int:
    from .verify.commands import run_check

    args.params = _params(args.param)
    return run_check(args, _read_source(args.against))


def _add_source_options(parser: argparse.ArgumentParser, reduction: bool = True) -> None:
    parser.add_argument("source", help="a formula, a catalog name (see 'losscomp list') or a .loss file")
    parser.add_argument("--name", help="which definition of the source (default: the last)")
    parser.add_argument("--wrt", nargs="+", metavar="ARG",
                        help="differentiation target(s) (default: the wrt clause, else the second argument)")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="a parameter default (repeatable); for a bare formula it also declares NAME a parameter")
    if reduction:
        parser.add_argument("--reduction", choices=("mean", "sum", "none"), default="mean")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="losscomp", description="Symbolic loss compiler: formula -> "
                                     "gradient and Hessian -> NumPy, PyTorch or TensorFlow code.")
    parser.add_argument("--version", action="version", version=f"losscomp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("compile", help="emit a standalone module for one backend",
                            description="Emit loss, grad, value_and_grad, hessian, hvp and newton_hessian "
                                        "as a standalone module that imports only its framework.")
    _add_source_options(p)
    p.add_argument("--backend", choices=("numpy", "torch", "tensorflow"), default="numpy")
    p.add_argument("-o", "--output", help="output file (default: standard output)")
    p.set_defaults(run=_cmd_compile)

    p = commands.add_parser("derive", help="print the loss, gradient and Hessian",
                            description="Print the per-element loss, gradient and Hessian, in plain math or LaTeX.")
    _add_source_options(p, reduction=False)
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of plain text")
    p.set_defaults(run=_cmd_derive)

    p = commands.add_parser("list", help="list the built-in losses", description="List the catalog of built-in losses.")
    p.set_defaults(run=_cmd_list)

    p = commands.add_parser("verify", help="check the emitted code against mpmath, differences and autodiff",
                            description="Evaluate every emitted function against a 50-digit mpmath evaluation of "
                                        "the SymPy expressions, central differences and each framework's autodiff; "
                                        "print a table. Exit 1 on any failure.")
    _add_source_options(p)
    p.add_argument("--backend", nargs="+", choices=("numpy", "torch", "tensorflow"),
                   help="backends to verify (default: all three)")
    p.add_argument("--points", type=int, default=600, help="about how many elements to sample (default 600)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(run=_cmd_verify)

    p = commands.add_parser("check", help="check a hand-written loss, gradient or Hessian against a formula",
                            description="Check MODULE:FUNCTION (a dotted module or a .py path; FUNCTION() calls a "
                                        "factory; a class is instantiated) against a formula. Exit 0 when it agrees "
                                        "(also when it differs only on kinks), 1 when it differs, 2 on bad input.")
    p.add_argument("function", metavar="MODULE:FUNCTION")
    p.add_argument("--against", required=True, metavar="NAME|FILE|FORMULA",
                   help="a catalog name, a .loss file or loss-language text")
    p.add_argument("--kind", choices=("loss", "grad", "hessian"), default="loss")
    p.add_argument("--framework", choices=("numpy", "torch", "tensorflow"),
                   help="default: detected from the function")
    p.add_argument("--name", help="which definition of the source (default: the last)")
    p.add_argument("--wrt", nargs="+", metavar="ARG", help="the formula's target(s)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a parameter of the formula (repeatable)")
    p.add_argument("--arguments", metavar="ARG=PARAM,...",
                   help="which parameter of the function takes each formula argument, e.g. y_pred=input,y=target "
                        "(default: equal names, then the frameworks' names, then by position)")
    p.add_argument("--reduction", choices=("mean", "sum"), default="mean",
                   help="what a scalar loss and the gradient are of (default: mean)")
    p.add_argument("--points", type=int, default=20_000, help="about how many elements to sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(run=_cmd_check)

    p = commands.add_parser("plot", help="draw losses and their gradients against the prediction",
                            description="Draw elementwise losses (catalog names, formulas or .loss files) and, "
                                        "with --gradient, their derivatives, as computed by the emitted NumPy code.")
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    p.add_argument("-o", "--output", required=True, help="image file (.png, .svg or .pdf)")
    p.add_argument("--gradient", action="store_true", help="add a panel with the derivative")
    p.add_argument("--range", nargs=2, type=float, default=(-3.0, 3.0), metavar=("LOW", "HIGH"),
                   help="prediction range for real-valued targets (default -3 3)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a parameter (repeatable)")
    p.add_argument("--title")
    p.set_defaults(run=_cmd_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except LossError as error:
        print(f"losscomp: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RecursionError:
        print("losscomp: error: the formula is nested too deeply", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:  # a bug in losscomp: say so briefly, without a traceback
        print(f"losscomp: internal error ({type(error).__name__}: {error}); please report it", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
