"""The parallel runner (``python -m pipeline.tools.parallel``) on tiny DAGs vs `dvc repro`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pipeline.tools.parallel import Plan, label, worker_env
from pipeline.tools.report import lock_stages, metric_md5s

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
    stages = lock_stages(root)
    out = {}
    for name, stage in stages.items():
        deps = {d["path"]: d.get("md5") if d["path"].endswith(".py") else None
                for d in stage.get("deps", [])}
        out[name] = (stage["cmd"], json.dumps(stage.get("params"), sort_keys=True), deps,
                     sorted(o["path"] for o in stage.get("outs", [])))
    return out


def runner(root: Path, *args: str, check: bool = True):
    return sh(root, sys.executable, "-m", "pipeline.tools.parallel", *args, check=check,
              PYTHONPATH=str(root))


def test_parallel_run_records_what_a_sequential_run_records(tmp_path, base_raw, migrated_db):
    raw = small_dag(base_raw)
    # `make repro` (J=1): DVC's own `dvc repro`, its stage commands started warm
    sequential = make_dvc_project(tmp_path / "seq", raw, migrated_db)
    runner(sequential, "-j", "1")
    assert json.loads(dvc(sequential, "status", "--json").stdout) == {}
    assert "nothing to run" in runner(sequential, "-j", "1").stdout  # up to date: stops early

    parallel = make_dvc_project(tmp_path / "par", raw, migrated_db)
    plan = runner(parallel, "--dry").stdout
    assert plan.splitlines()[0].startswith("prepare  <- -")
    assert "baselines@ce-0  <- prepare" in plan  # teacher-free: starts beside the teacher
    # targets by bare name (the stages live in dag/<part>/dvc.yaml) or by matrix stage
    one = runner(parallel, "--dry", "baselines@ce-0").stdout.splitlines()
    assert one == ["prepare  <- -", "baselines@ce-0  <- prepare"]
    group = {line.split()[0] for line in runner(parallel, "--dry", "baselines").stdout.splitlines()}
    assert group == {"prepare", "baselines@ce-0", "baselines@label_smoothing-0"}
    assert "no stage named nosuch" in runner(parallel, "--dry", "nosuch", check=False).stderr

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
    pending = set(map(label, json.loads(dvc(parallel, "status", "--json").stdout)))
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
    # one torch thread per run (the quick profile's runtime.num_threads): the same numbers
    assert metric_md5s(parallel) == metric_md5s(sequential)


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


def test_two_machines_through_dask_and_a_dvc_remote(tmp_path, base_raw, migrated_db):
    """Two Dask worker processes stand for two machines: each stage runs in its own clone,
    data travels through a local DVC remote, MLflow goes to one shared store (standing for
    the tracking server), and the coordinator's final `dvc repro --pull` records it all."""
    import shutil

    from distributed import LocalCluster

    raw = small_dag(base_raw)
    raw["baselines"]["methods"] = ["ce"]
    root = make_dvc_project(tmp_path / "coordinator", raw, migrated_db)
    dvc(root, "remote", "add", "-d", "store", str(tmp_path / "dvc-remote"))
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\ncheckpoints/\n")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny")
    shared = tmp_path / "server.db"
    shutil.copy(migrated_db, shared)
    uri = f"sqlite:///{shared}"

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        out = sh(root, sys.executable, "-m", "pipeline.tools.parallel", "-j", "2",
                 "--cluster", cluster.scheduler_address, check=False,
                 MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(root))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "finds nothing left to run" in out.stdout
    assert json.loads(dvc(root, "status", "--json").stdout) == {}
    assert (root / "results/tables/all_tables.md").is_file()  # restored from the remote
    from mlflow.tracking import MlflowClient

    from .helpers import seed_runs

    names = [r.info.run_name for r in seed_runs(MlflowClient(uri))]
    assert sorted(names) == sorted(set(names))  # every run once
    assert {"teacher", "baselines@ce-0", "kd_ablation@full-0", "introspective@full-0",
            "tuned@ce-0", "aggregate"} <= set(names)
    assert not seed_runs(MlflowClient(f"sqlite:///{root / 'mlflow.db'}"))  # all on the server
