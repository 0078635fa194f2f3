"""The layout stays telling: data flows one way through the stages, and compiling touches no framework."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "losscomp"

# Each stage may import only stages of a lower rank (DESIGN section 5's pipeline, front to back).
RANKS = {
    "_version": 0, "errors": 0, "naming": 0,
    "functions": 1, "limits": 1,
    "vocabulary": 2, "syntax": 2,
    "ir": 3,
    "canonical": 4, "catalog": 4,
    "derive": 5,
    "stabilize": 6, "display": 6, "schedule": 6, "native": 6,
    "backends": 7,
    "emit": 8, "runtime": 8, "combine": 8,
    "compiler": 9,
    "plot": 10, "fit": 10, "verify": 10, "boosting": 10,
    "testing": 11, "fit_dask": 11,
    "cli": 12,
    "__init__": 13, "__main__": 13,
}


def _stage(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imported_stages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    here = path.relative_to(PACKAGE).parts
    stages = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(here[:-1])[: len(here) - node.level]  # the package the relative import starts from
            target = base + (node.module.split(".") if node.module else [])
            if target:
                stages.add(target[0])
            else:  # `from . import x` at the top: x is the stage
                stages |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("losscomp."):
            stages.add(node.module.split(".")[1])
    return stages


def test_every_module_has_a_rank():
    stages = {_stage(p) for p in PACKAGE.rglob("*.py")}
    assert stages <= set(RANKS), f"give these a place in RANKS: {sorted(stages - set(RANKS))}"


def test_imports_point_from_later_stages_to_earlier_ones():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        stage = _stage(path)
        for imported in _imported_stages(path):
            if imported != stage and RANKS.get(imported, 99) >= RANKS[stage]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {imported}")
    assert not wrong, "imports against the flow of data:\n" + "\n".join(wrong)


def test_compiling_imports_no_framework_and_no_numpy():
    script = (
        "import sys, losscomp\n"
        "for name in ('huber', 'softmax_ce', 'triplet'):\n"
        "    loss = losscomp.compile(name)\n"
        "    for backend in ('numpy', 'torch', 'tensorflow', 'jax'):\n"
        "        loss.emit(backend)\n"
        "print(sorted(m for m in ('numpy', 'torch', 'tensorflow', 'keras', 'jax') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
