"""The parallel runner (``python -m pipeline.parallel``) on a tiny DAG, against plain `dvc repro`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.parallel import Plan, worker_env

from .conftest import tiny_raw
from .helpers import dvc, make_dvc_project, sh

pytestmark = pytest.mark.slow


def small_dag(base_raw: dict) -> dict:
    raw = tiny_raw(base_raw)
    raw["baselines"]["methods"] = ["ce", "label_smoothing"]
    raw["kd_ablation"]["variants"] = ["full"]
    raw["introspective_ablation"]["variants"] = ["full"]
    raw["tune"].update(methods=["ce"], teacher_methods=[], trials=[0], seeds=[100])
    return raw


def lock_summary(root: Path) -> dict:
    """Per stage: command, params, and dependencies (code by hash; trained data by path only,
    since workers with fewer CPU threads may round differently in the last digits)."""
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        deps = {d["path"]: d.get("md5") if d["path"].endswith(".py") else None
                for d in stage.get("deps", [])}
        out[name] = (stage["cmd"], json.dumps(stage.get("params"), sort_keys=True), deps,
                     sorted(o["path"] for o in stage.get("outs", [])))
    return out


def runner(root: Path, *args: str, check: bool = True):
    return sh(root, sys.executable, "-m", "pipeline.parallel", *args, check=check,
              PYTHONPATH=str(root))


def test_parallel_run_records_what_a_sequential_run_records(tmp_path, base_raw, migrated_db):
    raw = small_dag(base_raw)
    sequential = make_dvc_project(tmp_path / "seq", raw, migrated_db)
    dvc(sequential, "repro")

    parallel = make_dvc_project(tmp_path / "par", raw, migrated_db)
    plan = runner(parallel, "--dry").stdout
    assert plan.splitlines()[0].startswith("prepare  <- -")
    assert "baselines@ce-0  <- prepare" in plan  # teacher-free: starts beside the teacher

    # one instance fails: it is reported with its log, no new stage starts after it, and
    # everything that finished is recorded
    module = parallel / "pipeline/methods/label_smoothing.py"
    good = module.read_text()
    module.write_text(good.replace("        logits = self.student(x)\n",
                                   "        raise RuntimeError('sabotaged')\n", 1))
    failed = runner(parallel, "-j", "2", check=False)
    assert failed.returncode == 1
    assert "FAILED baselines@label_smoothing-0" in failed.stdout
    assert "sabotaged" in failed.stderr and "baselines_label_smoothing-0.log" in failed.stderr
    done = [line.split()[2] for line in failed.stdout.splitlines()
            if line.startswith("[parallel] done ")]
    assert done and "aggregate" not in done
    pending = set(json.loads(dvc(parallel, "status", "--json").stdout))
    assert not pending & set(done)
    assert "baselines@label_smoothing-0" in pending

    # mended, a rerun runs only what is left, then `dvc repro` finds nothing to do
    module.write_text(good)
    resumed = runner(parallel, "-j", "2")
    again = {line.split()[2] for line in resumed.stdout.splitlines()
             if line.startswith("[parallel] start ")}
    assert not again & set(done) and "aggregate" in again
    assert "finds nothing left to run" in resumed.stdout
    assert json.loads(dvc(parallel, "status", "--json").stdout) == {}
    assert lock_summary(parallel) == lock_summary(sequential)


def test_plan_waits_only_for_stages_in_the_plan():
    plan = Plan({"a": set(), "b": {"a"}, "c": set()}, ["a", "c", "b"])
    assert plan.ready(done=set(), started=set()) == ["a", "c"]
    assert plan.ready(done={"a"}, started={"a", "c"}) == ["b"]


def test_workers_share_cores_or_gpus(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert worker_env(0, 4, [])["OMP_NUM_THREADS"] == "2"
    assert worker_env(1, 16, [])["OMP_NUM_THREADS"] == "1"
    gpus = ["0", "1"] * 2  # --gpus 0,1 --per-gpu 2
    assert [worker_env(s, 4, gpus)["CUDA_VISIBLE_DEVICES"] for s in range(4)] == [
        "0", "1", "0", "1"]
