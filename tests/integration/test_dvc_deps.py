"""Every stage's code dependencies in dvc.yaml are exactly the files it can import.

Stages list the files they run, never a code folder (so editing the aggregation code, or a
module of ``pipeline/core`` a training run never imports, retrains nothing);
:func:`pipeline.core.code.imported_files` follows every import, including the ones inside
functions, so a new module cannot be forgotten there. A failure prints the lines to add.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.core.code import imported_files, manifest_path, module_file

from ..helpers import REPO


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


def resolved_stages() -> dict:
    """Every stage instance as DVC resolves it (matrix items filled in)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return {s.name: (s.cmd, [str(Path(d.def_path)) for d in s.deps])
                for s in repo.index.stages}


RESOLVED = resolved_stages()
CODE_STAGES = {name: (cmd, deps) for name, (cmd, deps) in RESOLVED.items()
               if cmd.startswith("python -m stages.code ")}
# a code manifest (dag/code/<script>.json) stands for the files its code stage hashes: the
# script's imports, without the manifest writer's own stages/code.py
MANIFESTS = {str(manifest_path(cmd.split()[-1])): [d for d in deps if d != "stages/code.py"]
             for cmd, deps in CODE_STAGES.values()}
STAGES = {name: (cmd, [f for d in deps for f in MANIFESTS.get(d, [d])])
          for name, (cmd, deps) in RESOLVED.items() if name not in CODE_STAGES}
# stages whose script trains one method without naming it on the command line
FIXED_METHOD = {"teacher": "ce", "shared_teacher": "ce", "tuning_teacher": "ce",
                "kd_ablation": "kd", "introspective": "introspective"}


def instance_code(name: str, cmd: str) -> set[Path]:
    """What an instance runs: its stage script, plus the method module the registry
    imports lazily for the method it trains (``--method`` or the stage's fixed method)."""
    words = cmd.split()
    files = imported_files([module_file(words[2], REPO)], REPO)  # python -m stages.X ...
    method = words[words.index("--method") + 1] if "--method" in words else \
        FIXED_METHOD.get(words[3] if len(words) > 3 else "")
    if method:
        files |= imported_files([REPO / "pipeline" / "methods" / f"{method}.py",
                                 REPO / "pipeline" / "methods" / "registry" / f"{method}.py"],
                                REPO)
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
    # a code folder would make the instance depend on every file in it, imported or not;
    # aggregate reads every method's registry entry (labels, order, claims): all of them
    allowed = {"pipeline/methods/registry"} if name == "aggregate" else set()
    extra += [d for d in deps if (REPO / d).is_dir() and d.startswith(("pipeline", "stages"))
              and d not in allowed]
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
        if method and name.split("@")[0] not in ("teacher", "shared_teacher", "tuning_teacher"):
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
        assert {s.name for s in spine} == {"prepare", "shared_teacher", "tune_select", "aggregate"}
        assert {s.name for s in set(graph.nodes) - reached} == set()
        parts = {Path(s.path).parent.name for s in graph.nodes if s not in spine}
        assert parts == {"teacher", "baselines", "kd_ablation", "introspective", "tune", "tuned",
                         "surface", "code"}
        assert all(Path(s.wdir) == REPO for s in graph.nodes)


def test_code_stages_depend_on_exactly_their_scripts_imports_and_every_script_has_one():
    """``code_<script>`` hashes what ``python -m stages.<script>`` imports: its deps are that
    closure plus the manifest writer's own code; and every matrix stage (the ones whose locks
    repeat per instance) reads a manifest in place of its files."""
    own = imported_files([module_file("stages.code", REPO)], REPO)
    for name, (cmd, deps) in CODE_STAGES.items():
        script = cmd.split()[-1]
        closure = imported_files([module_file(f"stages.{script}", REPO)], REPO)
        assert {Path(d) for d in deps} == {p.relative_to(REPO) for p in closure | own}, name
        assert name == f"code_{script}"
    for name, (cmd, deps) in RESOLVED.items():
        script = cmd.split()[2].removeprefix("stages.")
        if "@" in name or name in ("shared_teacher", "surface_reference"):
            assert str(manifest_path(script)) in deps, name
            assert not [d for d in deps if d.startswith(("pipeline/core", "pipeline/train"))], name
