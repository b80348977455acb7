"""Every stage's code dependencies in dvc.yaml cover all the code it can import.

Training stages list the modules they run instead of the whole ``pipeline/``
folder (so editing the aggregation code retrains nothing); this test follows
every import, including the ones inside functions, so a new module cannot be
forgotten there.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ..helpers import REPO


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
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and ast.unparse(block.test) == "TYPE_CHECKING"
                       for n in ast.walk(block)}  # imports for type hints never run
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
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
                    parts = name.split(".")
                    # importing a.b.c runs a/__init__.py and a/b/__init__.py first
                    for i in range(1, len(parts) + 1):
                        found = _module_file(".".join(parts[:i]))
                        if found is not None:
                            todo.append(found)
    return seen


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


def resolved_stages() -> dict:
    """Every stage instance as DVC resolves it (matrix items filled in)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return {s.name: (s.cmd, [str(Path(d.def_path)) for d in s.deps])
                for s in repo.index.stages}


STAGES = resolved_stages()
# stages whose script trains one method without naming it on the command line
FIXED_METHOD = {"teacher": "ce", "kd_ablation": "kd", "introspective": "introspective"}


def instance_code(name: str, cmd: str) -> set[Path]:
    """What an instance runs: its stage script, plus the method module the registry
    imports lazily for the method it trains (``--method`` or the stage's fixed method)."""
    words = cmd.split()
    files = imported_files(_module_file(words[2]))  # python -m stages.X ...
    method = words[words.index("--method") + 1] if "--method" in words else \
        FIXED_METHOD.get(words[3] if len(words) > 3 else "")
    if method:
        files |= imported_files(REPO / "pipeline" / "methods" / f"{method}.py")
    return files


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_cover_its_code(name):
    cmd, deps = STAGES[name]
    missing = [str(p.relative_to(REPO)) for p in instance_code(name, cmd)
               if not _covered(p, deps)]
    assert not missing, f"{name}: add to its deps in dvc.yaml: {missing}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_only_its_code(name):
    """The other direction: a code file an instance does not import is not its dependency
    (editing a table figure or another method's module must not retrain it)."""
    cmd, deps = STAGES[name]
    code = {p.relative_to(REPO) for p in instance_code(name, cmd)}
    extra = [d for d in deps if d.endswith(".py") and Path(d) not in code]
    # a folder dependency (pipeline/core, pipeline/train) must hold code the instance runs
    extra += [d for d in deps if (REPO / d).is_dir() and d.startswith(("pipeline", "stages"))
              and not any(Path(d) in c.parents for c in code)]
    # the tuning and tuned stages share one code list over their methods: IL's explainers
    # are listed for every method there (DVC's matrix cannot vary a dependency list)
    if name.startswith(("tune@", "tuned@")):
        extra = [d for d in extra if d not in ("pipeline/methods/explain.py",
                                               "pipeline/methods/analysis.py",
                                               "pipeline/methods/targets.py")]
    if name.startswith("baselines@"):
        extra = [d for d in extra if d != "pipeline/methods/targets.py"]
    assert not extra, f"{name}: depends on code it does not run: {extra}"


def test_teacher_free_stages_do_not_depend_on_the_teacher():
    from pipeline.methods import REGISTRY, Teacher

    for name, (cmd, deps) in STAGES.items():
        words = cmd.split()
        method = words[words.index("--method") + 1] if "--method" in words else \
            FIXED_METHOD.get(words[3] if len(words) > 3 else "")
        if method and name != "teacher":
            needs = REGISTRY[method].teacher is Teacher.REQUIRED
            teachers = [d for d in deps if Path(d) == Path("models/teacher")
                        or Path("models/teacher") in Path(d).parents]
            assert bool(teachers) == needs, name
            # tune_with_teacher@M-K: K is a trial; it distils the tuning seeds' teachers
            trial = name.startswith(("tune@", "tune_with_teacher@"))
            seed = None if trial else re.fullmatch(r".*-(\d+)", name)
            if needs and seed:  # a seed's instance: its own seed's teacher, no other
                assert teachers == [f"models/teacher/seed-{seed.group(1)}"], name


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


def test_plain_dvc_repro_reaches_every_part_and_runs_it_in_the_repo_root():
    """`dvc repro` targets the root dvc.yaml and what its stages need: a stage in
    dag/<part>/dvc.yaml that no root stage (transitively) needs would silently never run.
    Every part's stages run in the repo root, where params.yaml and the paths are."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        graph = repo.index.graph  # edge: stage -> a stage it depends on
        spine = [s for s in graph.nodes if Path(s.path) == REPO / "dvc.yaml"]
        reached = set(spine).union(*(nx.descendants(graph, s) for s in spine))
        assert {s.name for s in spine} == {"prepare", "teacher", "tune_select", "aggregate"}
        assert {s.name for s in set(graph.nodes) - reached} == set()
        parts = {Path(s.path).parent.name for s in graph.nodes if s not in spine}
        assert parts == {"baselines", "kd_ablation", "introspective", "tune", "tuned"}
        assert all(Path(s.wdir) == REPO for s in graph.nodes)
