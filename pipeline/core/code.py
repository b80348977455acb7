"""Which project files a stage instance runs: the import closure of its entry points.

A stage's ``dvc.yaml`` dependencies list exactly these files (a test checks it), and a run's
code fingerprint hashes the same files, so an edit reruns, and invalidates the checkpoints
of, exactly the instances that import the edited file. Imports inside functions count;
imports under ``if TYPE_CHECKING:`` never run and do not.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

PACKAGES = ("pipeline", "stages")  # the project's own code; everything else is a package
BASE = Path(__file__).resolve().parents[2]  # the folder holding ``pipeline`` and ``stages``


def module_file(name: str, base: Path = BASE) -> Path | None:
    """The file that importing ``name`` runs (``a/b/__init__.py`` or ``a/b.py``)."""
    path = base / Path(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _import_statements(body: list) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement in ``body`` and the blocks nested in it (functions, classes,
    if/try/with/match), skipping ``if TYPE_CHECKING:``; imports are statements, so no
    expression needs visiting (walking only statements is ~5x faster than ``ast.walk``)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            continue
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            inner = getattr(node, name, None)
            if isinstance(inner, list):
                yield from _import_statements(inner)


def _imported_names(path: Path, base: Path) -> list[str]:
    package = ".".join(path.relative_to(base).with_suffix("").parts[:-1])
    names: list[str] = []
    for node in _import_statements(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        else:
            module = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*parts, module] if module else parts)
            names += [module] + [f"{module}.{a.name}" for a in node.names]
    return names


def imported_files(starts: Iterable[Path], base: Path = BASE) -> set[Path]:
    """Every project file reachable from ``starts`` through any import statement (importing
    ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first)."""
    seen: set[Path] = set()
    todo = list(starts)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_names(path, base):
            parts = name.split(".")
            if parts[0] not in PACKAGES:
                continue
            for i in range(1, len(parts) + 1):
                found = module_file(".".join(parts[:i]), base)
                if found is not None:
                    todo.append(found)
    return seen


def instance_code(script: str, method: str | None, base: Path = BASE) -> list[Path]:
    """What a training instance runs, relative to ``base``: its stage script (``stages.train``)
    and the two modules the registry imports by name for the method it trains (its loss and
    its entry: ``pipeline/methods/[registry/]<method>.py``)."""
    starts = [module_file(script, base)]
    if method:
        starts += [base / "pipeline" / "methods" / f"{method}.py",
                   base / "pipeline" / "methods" / "registry" / f"{method}.py"]
    return sorted(p.relative_to(base) for p in imported_files([p for p in starts if p], base))


def code_fingerprint(files: Iterable[Path], base: Path = BASE) -> str:
    """sha256 of those files' paths and contents."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256((base / path).read_bytes()).digest())
    return digest.hexdigest()[:16]


# ---- code manifests: one file per stage script that its instances depend on

CODE_PART = Path("dag/code")  # its dvc.yaml declares the code stages; their manifests beside it


def manifest_path(script: str) -> Path:
    """Where ``code_<script>`` writes the manifest of ``python -m stages.<script>``."""
    return CODE_PART / f"{script}.json"


def declared_deps(script: str, base: Path = BASE) -> list[str]:
    """The dependencies ``dag/code/dvc.yaml`` declares for stage ``code_<script>``."""
    import yaml

    from pipeline.core.errors import ConfigError

    dvc_yaml = base / CODE_PART / "dvc.yaml"
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    if f"code_{script}" not in stages:
        raise ConfigError(f"{CODE_PART / 'dvc.yaml'}: no stage code_{script} "
                          f"(known: {', '.join(sorted(stages))})")
    return [str(d) for d in stages[f"code_{script}"].get("deps", [])]


def manifest(script: str, base: Path = BASE) -> dict[str, object]:
    """The md5 of every file ``python -m stages.<script>`` imports (its import closure).

    Every instance of a stage run by that script depends on this one file instead of
    listing the ~40 files itself: DVC rewrites a part's whole lock file after each stage
    it runs, so per-instance file lists made that rewrite cost about a second per stage.
    Editing a file reruns ``code_<script>``, whose manifest then changes (it holds each
    file's md5), so exactly the instances that import the file rerun. The code stage must
    declare exactly that closure (besides its own code, which the manifest leaves out, so
    an edit there changes no manifest); otherwise it fails and names the lines to change.
    """
    from pipeline.core.errors import ConfigError

    declared = {d for d in declared_deps(script, base) if d.endswith(".py")}
    entry = module_file(f"stages.{script}", base)
    if entry is None:
        raise ConfigError(f"{CODE_PART / 'dvc.yaml'}: code_{script}: no stages/{script}.py")
    closure = {p.relative_to(base).as_posix() for p in imported_files([entry], base)}
    own = {p.relative_to(base).as_posix() for p in imported_files(
        [f for f in [module_file("stages.code", base)] if f], base)}
    missing, extra = sorted(closure - declared), sorted(declared - closure - own)
    if missing or extra:
        raise ConfigError(
            f"{CODE_PART / 'dvc.yaml'}: stage code_{script} must depend on exactly the files "
            f"stages/{script}.py imports; " + "; ".join(
                f"{what}: {', '.join(paths)}" for what, paths in
                (("add", missing), ("remove", extra)) if paths))
    return {"script": f"stages.{script}",
            "files": {p: hashlib.md5((base / p).read_bytes()).hexdigest()
                      for p in sorted(closure)}}
