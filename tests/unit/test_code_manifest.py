"""A stage script's code manifest (``dag/code/<script>.json``): the md5 of each file the
script imports, checked against what its code stage declares. Built on a toy tree so the
expected files and digests are known by hand."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline.core.code import manifest
from pipeline.core.errors import ConfigError

FILES = {
    "pipeline/__init__.py": "",
    "pipeline/a.py": "def f():\n    from pipeline import b\n    return b.X\n",  # a lazy import
    "pipeline/b.py": "X = 1\n",
    "pipeline/unused.py": "Y = 2\n",
    "stages/__init__.py": "",
    "stages/x.py": "from pipeline.a import f\n",
    "stages/code.py": "",  # the manifest writer: declared by the code stage, never hashed
}
CLOSURE = ["pipeline/__init__.py", "pipeline/a.py", "pipeline/b.py", "stages/x.py"]


def tree(tmp_path: Path, declared: list[str]) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "dag/code").mkdir(parents=True)
    deps = "".join(f"      - {d}\n" for d in declared)
    (tmp_path / "dag/code/dvc.yaml").write_text(
        f"stages:\n  code_x:\n    cmd: python -m stages.code x\n    deps:\n{deps}")
    return tmp_path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_the_manifest_holds_each_imported_file_and_changes_only_with_them(tmp_path):
    base = tree(tmp_path, [*CLOSURE, "stages/code.py"])
    first = manifest("x", base)
    assert first == {"script": "stages.x", "files": {p: md5(base / p) for p in CLOSURE}}
    (base / "pipeline/unused.py").write_text("Y = 3\n")  # imported by nothing
    assert manifest("x", base) == first
    (base / "pipeline/b.py").write_text("X = 2\n")  # imported inside a function
    second = manifest("x", base)
    assert second["files"]["pipeline/b.py"] == hashlib.md5(b"X = 2\n").hexdigest()
    assert {k: v for k, v in second["files"].items() if k != "pipeline/b.py"} == \
        {k: v for k, v in first["files"].items() if k != "pipeline/b.py"}


@pytest.mark.parametrize(("declared", "message"), [
    ([p for p in CLOSURE if p != "pipeline/b.py"], "add: pipeline/b.py"),
    ([*CLOSURE, "pipeline/unused.py"], "remove: pipeline/unused.py"),
])
def test_a_code_stage_declaring_other_files_than_its_script_imports_fails(
        tmp_path, declared, message):
    base = tree(tmp_path, declared)
    with pytest.raises(ConfigError, match="code_x") as info:
        manifest("x", base)
    assert message in str(info.value)


def test_an_unknown_script_names_the_stages_there_are(tmp_path):
    base = tree(tmp_path, CLOSURE)
    with pytest.raises(ConfigError, match=r"no stage code_y \(known: code_x\)"):
        manifest("y", base)
