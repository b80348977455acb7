"""`python -m pipeline.tools.report`: the committed copy of a profile's results."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from pipeline.tools.report import lock_stages, metric_md5s, save


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=root,
                   check=True, capture_output=True)


def test_report_keeps_every_lock_file_and_says_when_the_code_changed(tmp_path, monkeypatch):
    files = {"params.yaml": "profile: demo\n", "results/tables/all_tables.md": "# T1\n",
             "results/tables/T1.csv": "a,b\n1,2\n", "dvc.yaml": "stages: {}\n",
             "dvc.lock": "schema: '2.0'\nstages: {aggregate: {}}\n",
             "dag/tune/dvc.yaml": "stages: {}\n",
             "dag/tune/dvc.lock": "schema: '2.0'\nstages: {tune@ce: {}}\n",
             "data/prepared/meta.json": json.dumps({"dataset": "digits", "sha256": "x",
                                                    "sizes": {"train": 1}})}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "x")
    monkeypatch.chdir(tmp_path)

    (tmp_path / "dag/tune/dvc.lock").write_text("schema: '2.0'\nstages: {tune@ce: {a: 1}}\n")
    assert lock_stages() == {"aggregate": {}, "tune@ce": {"a": 1}}  # the spine's and parts'
    target = save()  # a rerun rewrote a lock file: results changed, not the code
    assert target == Path("reports/demo")
    assert (target / "dvc.lock").read_text() == files["dvc.lock"]
    assert "{a: 1}" in (target / "dag/tune/dvc.lock").read_text()
    assert (target / "tables/T1.csv").read_text() == "a,b\n1,2\n"
    assert json.loads((target / "provenance.json").read_text())[
        "code_changed_since_commit"] is False

    (tmp_path / "dag/tune/dvc.yaml").write_text("stages: {x: {cmd: true}}\n")
    assert json.loads((save() / "provenance.json").read_text())["code_changed_since_commit"]


def test_metric_md5s_reads_every_lock_file(tmp_path):
    (tmp_path / "dag/kd").mkdir(parents=True)
    (tmp_path / "dvc.lock").write_text(
        "stages:\n  teacher:\n    outs:\n    - {path: results/teacher/metrics.json, md5: aa}\n"
        "    - {path: models/teacher, md5: bb.dir}\n")
    (tmp_path / "dag/kd/dvc.lock").write_text(
        "stages:\n  kd@full-0:\n    outs:\n    - {path: results/kd/full-0/metrics.json, md5: cc}\n")
    assert metric_md5s(tmp_path) == {"results/teacher/metrics.json": "aa",
                                     "results/kd/full-0/metrics.json": "cc"}
