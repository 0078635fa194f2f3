"""Hostile and careless input at the command line and the API boundary: every row exits 2 (or 0/1 where
that is right) with one line naming the problem, never 3, never a traceback, never a hang."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import losscomp
from losscomp import cli
from losscomp.errors import LossNameError, LossOptionError
from losscomp.verify import sampling

SOURCE = "f(y, p) = (y - p)^2\n"
TIMEOUT = 120   # a generous bound on a child that must not block; never a speed claim


def run_cli(*args: str, cwd: Path | None = None, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "losscomp", *args], cwd=cwd, env=env, timeout=TIMEOUT,
                          **({"capture_output": True} | popen))


def one_error_line(stderr: str) -> str:
    """The single `losscomp: error:` line of a clean failure."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("losscomp: error: "), stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    return lines[0]


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """A folder of hostile inputs: a good source, a non-UTF-8 one, an oversized one, a directory
    named like a source, a plain file used as a folder."""
    good = tmp_path / "good.loss"
    good.write_text(SOURCE)
    latin1 = tmp_path / "latin1.loss"
    latin1.write_bytes("# café\n".encode("latin-1") + SOURCE.encode())
    huge = tmp_path / "huge.loss"
    huge.write_bytes(SOURCE.encode() + b" " * cli.MAX_SOURCE_BYTES)
    (tmp_path / "folder.loss").mkdir()
    (tmp_path / "plain").write_text("not a folder")
    return {"dir": tmp_path, "good": good, "latin1": latin1, "huge": huge}


# -- every row of the table, through the CLI's main ----------------------------------------------

ROWS = [
    # (row, arguments with {dir} for the folder, phrase the message must hold)
    ("non-UTF-8 file", ["derive", "{dir}/latin1.loss"], "not UTF-8 text (byte 0xe9 on line 1)"),
    ("file over the size limit", ["derive", "{dir}/huge.loss"], "1,000,000 bytes"),
    ("directory named x.loss", ["derive", "{dir}/folder.loss"], "is a directory, not a regular file"),
    ("missing file", ["derive", "{dir}/missing.loss"], "No such file or directory"),
    ("NUL in a file name", ["derive", "{dir}/x\0.loss"], "not a valid file name"),
    ("very long lone name", ["derive", "x" * 10_000], "unknown loss 'xxx"),
    ("-o into a missing directory", ["compile", "mse", "-o", "{dir}/missing/out.py"], "no such directory"),
    ("-o under a plain file", ["compile", "mse", "-o", "{dir}/plain/out.py"], "no such directory"),
    ("-o onto a directory", ["compile", "mse", "-o", "{dir}/folder.loss", "--force"], "is a directory"),
    ("--param inf", ["derive", "pinball", "--param", "tau=inf"], "--param 'tau=inf': a parameter is a finite"),
    ("--param nan", ["compile", "pinball", "--param", "tau=nan"], "--param 'tau=nan': a parameter is a finite"),
    ("--param overflowing to inf", ["derive", "pinball", "--param", "tau=1e400"], "'tau=1e400': a parameter is"),
    ("--param inf to plot", ["plot", "mse", "-o", "{dir}/c.png", "--param", "tau=-inf"], "is a finite number"),
    ("--param not a number", ["derive", "pinball", "--param", "tau=abc"], "not a number"),
    ("plot with a bad extension", ["plot", "mse", "-o", "{dir}/curves.txt"], ".png, .svg, .pdf"),
    ("plot with no extension", ["plot", "mse", "-o", "{dir}/curves"], ".png, .svg, .pdf"),
    ("plot into a missing directory", ["plot", "mse", "-o", "{dir}/missing/c.png"], "no such directory"),
    ("plot --range reversed", ["plot", "mse", "-o", "{dir}/c.png", "--range", "3", "-3"], "LOW < HIGH"),
    ("plot --range nan", ["plot", "mse", "-o", "{dir}/c.png", "--range", "nan", "1"], "LOW < HIGH"),
    ("misspelled catalog name", ["derive", "hubber"], "unknown loss 'hubber'; did you mean 'huber'?"),
    ("unknown lone name", ["compile", "zzz"], "unknown loss 'zzz'"),
    ("check --points too many", ["check", "numpy:mean", "--against", "mse", "--points", "1000000000"],
     "from 1 to 1,000,000"),
    ("check --points 0", ["check", "numpy:mean", "--against", "mse", "--points", "0"], "from 1 to"),
    ("check --seed negative", ["check", "numpy:mean", "--against", "mse", "--seed", "-1"], "seed"),
    ("verify --points too many", ["verify", "mse", "--points", "1000000000"], "from 1 to 100,000"),
    ("verify --points negative", ["verify", "mse", "--points", "-5"], "from 1 to 100,000"),
    ("verify --seed negative", ["verify", "mse", "--seed", "-1"], "seed"),
    ("check --against a non-UTF-8 file", ["check", "numpy:mean", "--against", "{dir}/latin1.loss"], "not UTF-8"),
]


@pytest.mark.parametrize("row, args, phrase", ROWS, ids=[r[0] for r in ROWS])
def test_each_row_exits_2_with_one_line(capsys, files, row, args, phrase):
    code, out, err = in_process(capsys, *(a.format(dir=files["dir"]) for a in args))
    assert code == cli.EXIT_BAD_INPUT, (row, err)
    assert phrase in one_error_line(err), err
    assert out == ""


def test_the_limits_in_the_help_are_the_limits(capsys):
    for command, limit in (("check", sampling.MAX_CHECK_POINTS), ("verify", sampling.MAX_VERIFY_POINTS)):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert f"at most {limit:,}" in " ".join(capsys.readouterr().out.split())


def test_a_bad_output_fails_before_the_work(capsys, files):
    # -o is checked before compiling: a loss that cannot compile still reports the -o problem first
    code, _, err = in_process(capsys, "compile", "lgo(p)", "-o", f"{files['dir']}/missing/x.py")
    assert code == 2 and "no such directory" in one_error_line(err)


# -- -o onto existing files ----------------------------------------------------------------------

@pytest.mark.parametrize("force", [False, True])
def test_compile_never_writes_over_its_source(capsys, files, force):
    before = files["good"].read_bytes()
    code, _, err = in_process(capsys, "compile", str(files["good"]), "-o", str(files["good"]),
                              *(["--force"] if force else []))
    assert code == 2 and "is the source file" in one_error_line(err)
    assert files["good"].read_bytes() == before


def test_compile_never_writes_over_its_source_through_a_link(capsys, files):
    link = files["dir"] / "link.py"
    link.symlink_to(files["good"])
    before = files["good"].read_bytes()
    code, _, err = in_process(capsys, "compile", str(files["good"]), "-o", str(link), "--force")
    assert code == 2 and "is the source file" in one_error_line(err)
    assert files["good"].read_bytes() == before


def test_compile_overwrites_another_file_only_with_force(capsys, files):
    target = files["dir"] / "out.py"
    target.write_text("keep me\n")
    code, _, err = in_process(capsys, "compile", "mse", "-o", str(target))
    assert code == 2 and "add --force" in one_error_line(err)
    assert target.read_text() == "keep me\n"
    code, _, err = in_process(capsys, "compile", "mse", "-o", str(target), "--force")
    assert code == 0, err
    assert target.read_text() == losscomp.compile("mse").emit("numpy")


def test_compile_writes_a_new_file(capsys, files):
    target = files["dir"] / "new.py"
    code, out, err = in_process(capsys, "compile", str(files["good"]), "--backend", "torch", "-o", str(target))
    assert code == 0 and out == "" and err.strip() == f"wrote {target}"
    assert target.read_text() == losscomp.compile(SOURCE).emit("torch")


def test_plot_overwrites_only_with_force(capsys, files):
    image = files["dir"] / "curves.png"
    image.write_bytes(b"an older picture")
    code, _, err = in_process(capsys, "plot", "mse", "-o", str(image))
    assert code == 2 and "add --force" in one_error_line(err)
    assert image.read_bytes() == b"an older picture"
    code, _, err = in_process(capsys, "plot", "mse", "-o", str(image), "--force")
    assert code == 0, err
    assert image.read_bytes().startswith(b"\x89PNG")


def test_unwritable_directory(capsys, files, monkeypatch):
    # root may write anywhere, so the refusal is simulated where the OS would give it
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)
    code, _, err = in_process(capsys, "compile", "mse", "-o", f"{files['dir']}/out.py")
    assert code == 2 and "is not writable" in one_error_line(err)


def test_a_failed_write_is_a_clear_error(capsys, files, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli, "open", refuse, raising=False)
    code, _, err = in_process(capsys, "compile", "mse", "-o", f"{files['dir']}/out.py")
    assert code == 2 and f"cannot write {files['dir']}/out.py: Permission denied" in one_error_line(err)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_directory(capsys, files):
    folder = files["dir"] / "read_only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code, _, err = in_process(capsys, "compile", "mse", "-o", f"{folder}/out.py")
    finally:
        folder.chmod(stat.S_IRWXU)
    assert code == 2 and "is not writable" in one_error_line(err)


# -- in a child process: standard output, pipes, FIFOs, devices ----------------------------------

def test_non_utf8_file_end_to_end(files):
    result = run_cli("derive", str(files["latin1"]), text=True)
    assert result.returncode == 2
    assert one_error_line(result.stderr) == f"losscomp: error: cannot read {files['latin1']}: not UTF-8 text " \
                                            f"(byte 0xe9 on line 1)"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_blocking(files):
    fifo = files["dir"] / "x.loss"
    os.mkfifo(fifo)
    result = run_cli("derive", str(fifo), text=True)   # no writer ever comes: a blocking open would hang
    assert result.returncode == 2
    assert "is a FIFO, not a regular file" in one_error_line(result.stderr)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_dev_zero_named_like_a_source_is_refused(files):
    link = files["dir"] / "zero.loss"
    link.symlink_to("/dev/zero")
    result = run_cli("compile", str(link), text=True)   # reading would never end
    assert result.returncode == 2
    assert "is a character device, not a regular file" in one_error_line(result.stderr)


def run_closed_stdout(*args: str) -> subprocess.CompletedProcess:
    """`losscomp ARGS >&-`: started with file descriptor 1 closed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(["sh", "-c", 'exec "$0" -m losscomp "$@" >&-', sys.executable, *args], env=env,
                          stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)


@pytest.mark.parametrize("args", [["list"], ["derive", "huber"], ["compile", "mse"]])
def test_closed_stdout(args):
    result = run_closed_stdout(*args)
    assert result.returncode == 2
    assert "standard output is closed" in one_error_line(result.stderr)


def test_closed_stdout_does_not_matter_with_o(files):
    target = files["dir"] / "out.py"
    result = run_closed_stdout("compile", "mse", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_text() == losscomp.compile("mse").emit("numpy")


def test_stdout_open_for_reading_only(files):
    with open(files["good"], "rb") as read_only:
        result = run_cli("derive", "huber", capture_output=False, stdout=read_only, stderr=subprocess.PIPE,
                         text=True)
    assert result.returncode == 2
    assert "cannot write to standard output" in one_error_line(result.stderr)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_stdout_on_a_full_device():
    with open("/dev/full", "wb") as full:
        result = run_cli("compile", "huber", "--backend", "torch", capture_output=False, stdout=full,
                         stderr=subprocess.PIPE, text=True)
    assert result.returncode == 2
    assert "cannot write to standard output: No space left on device" in one_error_line(result.stderr)


@pytest.mark.parametrize("args", [["verify", "mse", "--backend", "numpy", "--points", "50"],
                                  ["compile", "huber"], ["list"]])
def test_a_reader_that_goes_away_ends_it_quietly(args):
    """`losscomp ... | head`: the pipe is closed before losscomp writes (it is still importing), so every
    write fails with EPIPE; losscomp stops with 141 and says nothing."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen([sys.executable, "-m", "losscomp", *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env)
    child.stdout.close()
    _, err = child.communicate(timeout=TIMEOUT)
    assert child.returncode == cli.EXIT_BROKEN_PIPE == 141
    assert err == b""


# -- the API boundary -----------------------------------------------------------------------------

def test_check_points_limit():
    def mse(y, p):
        return np.mean((y - p) ** 2)

    for points in (10 ** 9, sampling.MAX_CHECK_POINTS + 1, 0, -1, 2.5, True, "100"):
        with pytest.raises(LossOptionError, match="points must be an integer from 1 to 1,000,000"):
            losscomp.check(mse, against="mse", points=points)
    with pytest.raises(LossOptionError, match="seed"):
        losscomp.check(mse, against="mse", seed=-3)
    assert losscomp.check(mse, against="mse", points=1).ok   # the smallest sample still works


def test_verify_points_limit():
    from losscomp.verify import verify

    with pytest.raises(LossOptionError, match="MAX_VERIFY_POINTS"):
        verify("mse", points=10 ** 9)
    with pytest.raises(LossOptionError, match="from 1 to 100,000"):
        verify("mse", points=np.int64(0))


def test_a_lone_name_is_a_catalog_lookup():
    with pytest.raises(LossNameError, match=r"unknown loss 'hubber'; did you mean 'huber'\?"):
        losscomp.compile("hubber")
    with pytest.raises(LossNameError, match="unknown loss 'residual'"):
        losscomp.compile("  residual  # a comment\n")
    # parentheses and comments do not change what a lone catalog name means
    assert losscomp.compile("(huber)  # the catalog loss").value == losscomp.compile("huber").value
    # an expression of one name is still an expression
    assert str(losscomp.compile("e^2", wrt="e").gradient) == "2*e"


@pytest.mark.parametrize("method, backend", [("emit", None), ("build", 5), ("build", None), ("build", []),
                                             ("emit", 1.5)])
def test_backend_of_the_wrong_type(method, backend):
    loss = losscomp.compile("mse")
    with pytest.raises(LossOptionError, match="a backend is named by a string"):
        getattr(loss, method)(backend)


# -- saving a generated nn.Module ----------------------------------------------------------------

def _python(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)


# the pinball loss at tau = 0.9, written out in torch: the truth the reloaded modules must give
TRUTH = """
        # the nn.Module takes (input, target), PyTorch's order: loss(p, y) is pinball(y, p)
        torch.manual_seed(0)
        y, p = torch.randn(64, dtype=torch.float64), torch.randn(64, dtype=torch.float64)
        e = y - p
        expected = torch.maximum(0.9 * e, (0.9 - 1) * e).mean()
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """One process saves a loss module three ways: (a) written by `losscomp compile -o`, imported by name
    and pickled whole; (b) a model's state_dict beside the loss's source and parameters; (c) a module
    from build() pickled whole."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("saved")
    assert cli.main(["compile", "pinball", "--backend", "torch", "-o", str(folder / "pinball_loss.py")]) == 0
    result = _python("""
        import json, torch, losscomp
        from pathlib import Path
        from pinball_loss import PinballLoss
        torch.save(PinballLoss(tau=0.9), "vendored.pt")

        spec = {"source": "pinball", "params": {"tau": 0.9}}
        loss = losscomp.compile(spec["source"], params=spec["params"]).build("torch").PinballLoss(tau=0.9)
        torch.manual_seed(1)
        model = torch.nn.ModuleDict({"net": torch.nn.Linear(3, 1).double(), "loss": loss})
        torch.save(model.state_dict(), "model.pt")
        Path("loss.json").write_text(json.dumps(spec))

        torch.save(loss, "built.pt")
    """, folder)
    assert result.returncode == 0, result.stderr
    return folder


def test_saved_module_from_compile_o_loads_by_name(saved):
    """Supported: write the module with `losscomp compile -o`, import it by name, torch.save the object;
    a fresh process that can import the file loads it (and needs no losscomp)."""
    loaded = _python("""
        import sys, torch
        sys.modules["losscomp"] = None
        loss = torch.load("vendored.pt", weights_only=False)
    """ + TRUTH + """
        assert type(loss).__module__ == "pinball_loss" and loss.tau == 0.9
        assert torch.allclose(loss(p, y), expected, rtol=1e-13, atol=0)
        print("ok")
    """, saved)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "ok"


def test_state_dict_and_regenerate(saved):
    """Supported: save the model's state_dict (the loss holds no tensors) and the loss's source and
    parameters; a fresh process regenerates the loss and loads the state."""
    loaded = _python("""
        import json, torch, losscomp
        from pathlib import Path
        spec = json.loads(Path("loss.json").read_text())
        module = losscomp.compile(spec["source"], params=spec["params"]).build("torch")
        model = torch.nn.ModuleDict({"net": torch.nn.Linear(3, 1).double(),
                                     "loss": module.PinballLoss(**spec["params"])})
        model.load_state_dict(torch.load("model.pt"))
        torch.manual_seed(1)
        reference = torch.nn.Linear(3, 1).double()     # the same seed: the weights that were saved
        assert torch.equal(model["net"].weight, reference.weight)
        assert torch.equal(model["net"].bias, reference.bias)
    """ + TRUTH + """
        assert torch.allclose(model["loss"](p, y), expected, rtol=1e-13, atol=0)
        print("ok")
    """, saved)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "ok"


def test_pickled_built_module_needs_the_same_loss_built_first(saved):
    """Not supported by itself: a module from build() lives in its process. A fresh process fails to
    unpickle it with ModuleNotFoundError (as the README says) until it builds the same loss with the
    same options, which registers the same module name again."""
    loaded = _python("""
        import torch, losscomp
        try:
            torch.load("built.pt", weights_only=False)
        except ModuleNotFoundError as error:
            assert "losscomp_generated_pinball_torch_" in str(error), error
        else:
            raise AssertionError("loaded without the generated module")
        losscomp.compile("pinball", params={"tau": 0.9}).build("torch")
        loss = torch.load("built.pt", weights_only=False)
    """ + TRUTH + """
        assert torch.allclose(loss(p, y), expected, rtol=1e-13, atol=0)
        print("ok")
    """, saved)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "ok"
