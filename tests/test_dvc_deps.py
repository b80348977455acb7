"""Every stage's code dependencies in dvc.yaml cover all the code it can import.

Training stages list the modules they run instead of the whole ``pipeline/``
folder (so editing the aggregation code retrains nothing); this test follows
every import, including the ones inside functions, so a new module cannot be
forgotten there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from .conftest import REPO


def _module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def imported_files(start: Path) -> set[Path]:
    """Project files reachable from ``start`` through any import statement."""
    seen: set[Path] = set()
    todo = [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] in ("pipeline", "stages"):
                    found = _module_file(name)
                    if found is not None:
                        todo.append(found)
    return seen


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_its_code(name):
    stage = STAGES[name]
    script = stage["cmd"].split()[2]  # python -m stages.X ...
    deps = [d for d in stage["deps"] if isinstance(d, str)]
    missing = [str(p.relative_to(REPO)) for p in imported_files(_module_file(script))
               if not _covered(p, deps)]
    assert not missing, f"{name}: add to its deps in dvc.yaml: {missing}"


@pytest.mark.parametrize(("path", "ignored"), [
    ("pipeline/methods/__pycache__/kd.cpython-311.pyc", True),
    ("pipeline/__pycache__/engine.cpython-311.pyc", True),
    ("pipeline/methods/kd.py", False),
])
def test_dvc_ignores_byte_code(path, ignored):
    """A .pyc header holds its source's mtime: hashed into the ``pipeline/methods``
    directory dependency it would make every fresh clone look changed."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "dvc", "check-ignore", "-q", path], cwd=REPO)
    assert proc.returncode == (0 if ignored else 1)
