"""The `losscomp` command: a thin shell over the Python API.

Exit codes: 0 success, 1 a failed check, 2 bad input (the message names the problem and the place),
3 a bug in losscomp; 141 (128 + SIGPIPE, as a C tool killed by the signal) when the reader of
standard output goes away (`losscomp verify huber | head`), quietly.

Files: a SOURCE file is read only if it is a regular file of at most MAX_SOURCE_BYTES in UTF-8 (a
FIFO or a device is refused before it is read, never waited on). `-o` never writes over a source
file, and over another existing file only with --force.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
from pathlib import Path
from typing import Sequence

from ._version import __version__
from .errors import LossError, LossOptionError

# losscomp.compiler.BACKENDS, spelled out so that the parser does not import SymPy
BACKENDS = ("numpy", "torch", "tensorflow", "jax")

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_BROKEN_PIPE, EXIT_INTERRUPTED = 128 + 13, 128 + 2   # as a shell reports SIGPIPE and SIGINT
MAX_SOURCE_BYTES = 1_000_000    # the largest .loss file read (the whole catalog is about 10 kB)
IMAGE_FORMATS = (".png", ".svg", ".pdf")


def _source_path(text: str) -> Path | None:
    """The file SOURCE names: a name ending in .loss, or an existing path with a suffix; else None
    (SOURCE is a formula or a catalog name)."""
    if text.endswith(".loss"):
        return Path(text)
    if len(text) < 4096 and "\n" not in text and Path(text).suffix and os.path.lexists(text):
        return Path(text)
    return None


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def _read_file(path: Path) -> str:
    """A regular file of at most MAX_SOURCE_BYTES, UTF-8. Opened without blocking (a FIFO opens at once
    and is refused), checked on the open descriptor, read with a bound (a file that grows is refused)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise LossOptionError(f"cannot read {path}: {error.strerror}") from None
    except ValueError:   # a NUL byte in the name
        raise LossOptionError(f"cannot read {str(path)!r}: not a valid file name") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise LossOptionError(f"cannot read {path}: it is {_file_kind(info.st_mode)}, not a regular file")
        data = b""
        if info.st_size <= MAX_SOURCE_BYTES:
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read(MAX_SOURCE_BYTES + 1)
        if info.st_size > MAX_SOURCE_BYTES or len(data) > MAX_SOURCE_BYTES:
            raise LossOptionError(f"cannot read {path}: larger than the limit of {MAX_SOURCE_BYTES:,} bytes "
                                  f"for a source file")
    except OSError as error:
        raise LossOptionError(f"cannot read {path}: {error.strerror}") from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise LossOptionError(f"cannot read {path}: not UTF-8 text (byte 0x{data[error.start]:02x} on line "
                              f"{line})") from None


def _read_source(text: str) -> str:
    """SOURCE is a file path (see _source_path), else a formula or a catalog name."""
    path = _source_path(text)
    return text if path is None else _read_file(path)


def _output_path(output: str, sources: Sequence[str], force: bool) -> Path:
    """Where `-o` may write: into an existing, writable directory; never over a source file; over
    another existing file only with --force. (Checked before the work, so a bad -o fails at once.)"""
    path = Path(output)
    folder = path.parent
    if not folder.is_dir():
        raise LossOptionError(f"-o {output}: no such directory {str(folder)!r}")
    if not os.access(folder, os.W_OK):
        raise LossOptionError(f"-o {output}: the directory {str(folder)!r} is not writable")
    if os.path.lexists(path):
        for source in filter(None, map(_source_path, sources)):
            if _same_file(path, source):
                raise LossOptionError(f"-o {output} is the source file {source}; losscomp never writes over its "
                                      f"input (choose another output file)")
        if os.path.isdir(path):
            raise LossOptionError(f"-o {output} is a directory; name a file")
        if not force:
            raise LossOptionError(f"-o {output}: the file exists; add --force to overwrite it")
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _write_text(path: Path, text: str, force: bool) -> None:
    """Write `text` to `path`; without --force only a new file is created (mode "x": no race either)."""
    try:
        with open(path, "w" if force else "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise LossOptionError(f"-o {path}: the file exists; add --force to overwrite it") from None
    except OSError as error:
        raise LossOptionError(f"cannot write {path}: {error.strerror}") from None


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
        if not math.isfinite(params[key]):
            raise LossOptionError(f"--param {item!r}: a parameter is a finite number")
    return params


def _compile(args):
    from .compiler import compile as compile_loss

    wrt = args.wrt[0] if args.wrt and len(args.wrt) == 1 else args.wrt
    return compile_loss(_read_source(args.source), name=args.name, wrt=wrt,
                        reduction=getattr(args, "reduction", "mean"), params=_params(args.param))


def _cmd_compile(args) -> int:
    to_file = args.output not in (None, "-")
    path = _output_path(args.output, [args.source], args.force) if to_file else None
    text = _compile(args).emit(args.backend)
    if path is None:
        sys.stdout.write(text)
    else:
        _write_text(path, text, args.force)
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

    if Path(args.output).suffix.lower() not in IMAGE_FORMATS:
        raise LossOptionError(f"-o {args.output}: the image format comes from the extension, one of "
                              f"{', '.join(IMAGE_FORMATS)}")
    low, high = args.range
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise LossOptionError(f"--range {low:g} {high:g}: expected two finite numbers LOW < HIGH")
    _output_path(args.output, args.sources, args.force)
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
                                     "gradient and Hessian -> NumPy, PyTorch, TensorFlow or JAX code.",
                                     epilog="Exit codes: 0 ok; 1 check or verify found a difference; 2 bad input; "
                                            "3 a bug in losscomp (please report it); 141 the reader of standard "
                                            "output went away (| head).")
    parser.add_argument("--version", action="version", version=f"losscomp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("compile", help="emit a standalone module for one backend",
                            description="Emit loss, grad, value_and_grad, hessian, hvp and newton_hessian "
                                        "as a standalone module that imports only its framework.")
    _add_source_options(p)
    p.add_argument("--backend", choices=BACKENDS, default="numpy")
    p.add_argument("-o", "--output", help="output file (default: standard output); never the source file, "
                                           "an existing file only with --force")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file (never the source)")
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
    p.add_argument("--backend", nargs="+", choices=BACKENDS,
                   help="backends to verify (default: all)")
    p.add_argument("--points", type=int, default=600,
                   help="about how many elements to sample (default 600, at most 100,000)")
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
    p.add_argument("--framework", choices=BACKENDS,
                   help="default: detected from the function")
    p.add_argument("--name", help="which definition of the source (default: the last)")
    p.add_argument("--wrt", nargs="+", metavar="ARG", help="the formula's target(s)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a parameter of the formula (repeatable)")
    p.add_argument("--arguments", metavar="ARG=PARAM,...",
                   help="which parameter of the function takes each formula argument, e.g. y_pred=input,y=target "
                        "(default: equal names, then the frameworks' names, then by position)")
    p.add_argument("--reduction", choices=("mean", "sum"), default="mean",
                   help="what a scalar loss and the gradient are of (default: mean)")
    p.add_argument("--points", type=int, default=20_000,
                   help="about how many elements to sample (default 20,000, at most 1,000,000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(run=_cmd_check)

    p = commands.add_parser("plot", help="draw losses and their gradients against the prediction",
                            description="Draw elementwise losses (catalog names, formulas or .loss files) and, "
                                        "with --gradient, their derivatives, as computed by the emitted NumPy code.")
    p.add_argument("sources", nargs="+", metavar="SOURCE")
    p.add_argument("-o", "--output", required=True, help="image file (.png, .svg or .pdf); an existing file "
                                                          "only with --force")
    p.add_argument("--force", action="store_true", help="overwrite an existing image file")
    p.add_argument("--gradient", action="store_true", help="add a panel with the derivative")
    p.add_argument("--range", nargs=2, type=float, default=(-3.0, 3.0), metavar=("LOW", "HIGH"),
                   help="prediction range for real-valued targets (default -3 3)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a parameter (repeatable)")
    p.add_argument("--title")
    p.set_defaults(run=_cmd_plot)
    return parser


class _StdoutError(Exception):
    """Writing to standard output failed (a full disk, a descriptor open for reading only, ...)."""

    def __init__(self, error: OSError):
        super().__init__(error.strerror or str(error))


class _Stdout:
    """sys.stdout while a command runs: a failed write is told apart from any other OSError."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as error:
            raise _StdoutError(error) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as error:
            raise _StdoutError(error) from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _discard_stdout() -> None:
    """Point file descriptor 1 at the null device, so that the interpreter's last flush of what is
    still buffered cannot fail again (and print a traceback) on the way out."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): nothing to do
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    os.close(null)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stdout is None and getattr(args, "output", None) in (None, "-"):   # started with fd 1 closed
        print("losscomp: error: standard output is closed; redirect it or write to a file with -o",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    stdout = sys.stdout
    sys.stdout = _Stdout(stdout) if stdout is not None else None
    try:
        code = args.run(args)
        if sys.stdout is not None:
            sys.stdout.flush()
        return code
    except BrokenPipeError:   # the reader went away (`| head`): stop quietly, as a C tool does
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except _StdoutError as error:
        _discard_stdout()
        print(f"losscomp: error: cannot write to standard output: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except LossError as error:
        print(f"losscomp: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RecursionError:
        print("losscomp: error: the formula is nested too deeply", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:  # a bug in losscomp: say so briefly, without a traceback
        print(f"losscomp: internal error ({type(error).__name__}: {error}); please report it", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        sys.stdout = stdout


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
