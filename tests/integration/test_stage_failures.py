"""Reliability, provoked for real: kill -9 and resume, Ctrl-C, bad input, divergence,
an unreachable tracking server, concurrent stage processes on one SQLite store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from ..helpers import env_for, make_project, seed_runs, stage, tiny_raw


def start(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.train", *args], cwd=root,
                            env=env_for(root), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"process ended before '{needle}': {proc.stderr.read()}")
    raise AssertionError(f"'{needle}' not seen in {timeout}s")


@pytest.fixture
def slow_raw(base_raw) -> dict:
    """Epochs long enough (about a second) to be interrupted in the middle."""
    raw = tiny_raw(base_raw)
    raw["data"]["train_per_class"] = None
    raw["student"]["model"] = {"arch": "small_cnn", "width": 0.5}
    raw["student"]["train"].update(epochs=5, batch_size=8)
    return raw


def read_metrics(root: Path, instance: str = "ce-0") -> dict:
    return json.loads((root / f"results/baselines/{instance}/metrics.json").read_text())


def run_history(root: Path, key: str = "test_acc") -> tuple[str, list[int], str]:
    run_id = json.loads((root / "results/baselines/ce-0/mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    steps = sorted(m.step for m in client.get_metric_history(run_id, key))
    return run_id, steps, client.get_run(run_id).info.status


@pytest.fixture
def reference(tmp_path, slow_raw, migrated_db) -> dict:
    """The uninterrupted run every interrupted one must match bit for bit."""
    root = make_project(tmp_path / "reference", slow_raw, migrated_db)
    proc = stage(root, "baselines", "--method", "ce", "--seed", "0")
    assert proc.returncode == 0, proc.stderr
    return read_metrics(root)


def test_sigkill_mid_epoch_then_rerun_resumes_the_same_run(tmp_path, slow_raw, migrated_db,
                                                           reference):
    root = make_project(tmp_path / "killed", slow_raw, migrated_db)
    proc = start(root, "baselines", "--method", "ce", "--seed", "0")
    wait_for_line(proc, "epoch 2/5")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(root / "checkpoints/baselines/ce-0/last.pt", weights_only=False)
    assert 2 <= state["epoch"] < 5
    assert not (root / "results/baselines/ce-0/metrics.json").exists()
    rerun = stage(root, "baselines", "--method", "ce", "--seed", "0")
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming after epoch {state['epoch']}/5" in rerun.stdout
    assert read_metrics(root) == reference  # bit-identical on CPU
    run_id, steps, status = run_history(root)
    assert steps == [1, 2, 3, 4, 5] and status == "FINISHED"  # no gap, no duplicate
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert [r.info.run_id for r in seed_runs(client)] == [run_id]  # no orphan run


def test_sigint_finishes_the_step_checkpoints_and_exits_130(tmp_path, slow_raw, migrated_db,
                                                            reference):
    root = make_project(tmp_path / "interrupted", slow_raw, migrated_db)
    proc = start(root, "baselines", "--method", "ce", "--seed", "0")
    wait_for_line(proc, "epoch 1/5")
    time.sleep(0.3)  # land inside epoch 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    state = torch.load(root / "checkpoints/baselines/ce-0/last.pt", weights_only=False)
    assert state["epoch"] >= 1
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    (killed,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert killed.info.status == "KILLED"
    rerun = stage(root, "baselines", "--method", "ce", "--seed", "0")
    assert rerun.returncode == 0, rerun.stderr
    assert read_metrics(root) == reference
    run_id, steps, status = run_history(root)
    assert run_id == killed.info.run_id and steps == [1, 2, 3, 4, 5] and status == "FINISHED"


def test_exploding_lr_marks_the_run_failed(tmp_path, base_raw, migrated_db):
    raw = tiny_raw(base_raw)
    raw["student"]["train"].update(lr=1e12, schedule={"name": "constant"})
    root = make_project(tmp_path / "nan", raw, migrated_db)
    proc = stage(root, "baselines", "--method", "ce", "--seed", "0")
    assert proc.returncode == 2
    assert "non-finite loss at epoch 1" in proc.stderr and "Traceback" not in proc.stderr
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FAILED"
    assert "non-finite loss" in run.data.tags["failure_reason"]
    assert not (root / "results/baselines/ce-0").exists()


def test_four_concurrent_stage_processes_lose_nothing(tmp_path, base_raw, migrated_db):
    raw = tiny_raw(base_raw)
    raw["student"]["train"]["epochs"] = 3
    root = make_project(tmp_path / "parallel", raw, migrated_db)
    jobs = [("ce", "0"), ("ce", "1"), ("label_smoothing", "0"), ("confidence_penalty", "0")]
    procs = [start(root, "baselines", "--method", m, "--seed", s) for m, s in jobs]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    every = client.search_runs([e.experiment_id for e in client.search_experiments()])
    runs = [r for r in every if r.data.tags.get("ilkd_role") == "seed"]
    assert sorted(r.info.run_name for r in runs) == sorted(f"baselines@{m}-{s}" for m, s in jobs)
    # seeds finishing at the same time still share exactly one parent run per method, whose
    # metrics are the mean over its children's metrics.json
    parents = {r.data.tags["ilkd_group"]: r for r in every
               if r.data.tags.get("ilkd_role") == "parent"}
    assert sorted(parents) == ["baselines@ce", "baselines@confidence_penalty",
                               "baselines@label_smoothing"]
    ce_parent = parents["baselines@ce"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == ce_parent.info.run_id]
    assert sorted(r.info.run_name for r in children) == ["baselines@ce-0", "baselines@ce-1"]
    accs = [read_metrics(root, f"ce-{s}")["test_acc"] for s in (0, 1)]
    assert ce_parent.data.metrics["test_acc_mean"] == pytest.approx(sum(accs) / 2)
    assert ce_parent.data.metrics["seeds"] == 2
    for run in runs:
        assert run.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")]
        assert sorted(steps) == [1, 2, 3]
        assert "metrics.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
    for method, seed in jobs:
        assert read_metrics(root, f"{method}-{seed}")["epochs"] == 3


# ------------------------------------------------------------------ bad input


def _edit(raw: dict, dotted: str, value) -> dict:
    node = raw
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return raw


def _images(root: Path, split: str, classes: list[str]) -> None:
    for name in classes:
        (root / split / name).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(root / split / name / "a.png")


def test_bad_params_fail_before_training(tmp_path, base_raw, migrated_db):
    """A training stage with a params typo: exit 2, one line naming the key, nothing written.
    (Every kind of bad value is checked in process by tests/unit/test_config.py; this is the
    end-to-end path through the stage command.)"""
    root = make_project(tmp_path / "p", tiny_raw(base_raw), migrated_db)
    raw = _edit(tiny_raw(base_raw), "student.train.lrr", 0.1)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = stage(root, "baselines", "--method", "ce", "--seed", "0")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: params.yaml: student.train.lrr: unknown key")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (root / "results").exists() and not (root / "models").exists()


def _teacher_mismatch(root: Path, raw: dict) -> list[str]:
    for args in (["shared_teacher"], ["teacher", "--seed", "0"]):
        run = stage(root, *args)
        assert run.returncode == 0, run.stderr
    raw["teacher"]["model"]["width"] = 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    shutil.rmtree(root / "results")
    return ["kd_ablation", "--variant", "full", "--seed", "0"]


def _corrupt_data(root: Path, raw: dict) -> list[str]:
    path = root / "data/prepared/data.npz"
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0xFF
    path.write_bytes(bytes(blob))
    return ["baselines", "--method", "ce", "--seed", "0"]


def _truncated_checkpoint(root: Path, raw: dict) -> list[str]:
    assert stage(root, "baselines", "--method", "ce", "--seed", "0").returncode == 0
    ckpt = root / "checkpoints/baselines/ce-0/last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])
    shutil.rmtree(root / "results")
    shutil.rmtree(root / "models")
    return ["baselines", "--method", "ce", "--seed", "0"]


def _unreachable_tracking(root: Path, raw: dict) -> list[str]:
    os.environ["ILKD_TEST_URI"] = "http://127.0.0.1:9"  # discard port: nothing listens
    return ["baselines", "--method", "ce", "--seed", "0"]


OTHER_CASES = [
    ("unknown method", lambda r, w: ["baselines", "--method", "mixup", "--seed", "0"],
     "error: baselines: unknown method 'mixup'"),
    ("unknown variant", lambda r, w: ["kd_ablation", "--variant", "half", "--seed", "0"],
     "error: kd_ablation: unknown variant 'half'"),
    ("missing teacher", lambda r, w: ["kd_ablation", "--variant", "full", "--seed", "0"],
     "models/teacher/seed-0/model.pt: teacher model not found"),
    ("teacher arch mismatch", _teacher_mismatch, "teacher is small_cnn (width 0.25) but"),
    ("corrupt prepared data", _corrupt_data, "data/prepared/data.npz: checksum mismatch"),
    ("missing prepared data",
     lambda r, w: (shutil.rmtree(r / "data"), ["baselines", "--method", "ce", "--seed", "0"])[1],
     "data/prepared/data.npz: prepared data not found"),
    ("truncated checkpoint", _truncated_checkpoint,
     "checkpoints/baselines/ce-0/last.pt: checkpoint is unreadable"),
    ("missing params file",
     lambda r, w: ((r / "params.yaml").unlink(), ["shared_teacher"])[1],
     "params.yaml: params file not"),
    ("invalid yaml",
     lambda r, w: ((r / "params.yaml").write_text("a: [1,"), ["shared_teacher"])[1],
     "not valid YAML"),
    ("unreachable tracking server", _unreachable_tracking,
     "MLFLOW_TRACKING_URI=http://127.0.0.1:9: tracking server not reachable"),
]


@pytest.mark.parametrize(("case", "setup", "message"), OTHER_CASES,
                         ids=[c[0] for c in OTHER_CASES])
def test_bad_inputs_fail_with_one_clear_line(tmp_path, base_raw, migrated_db, case, setup,
                                             message):
    raw = tiny_raw(base_raw)
    root = make_project(tmp_path / "p", raw, migrated_db)
    os.environ.pop("ILKD_TEST_URI", None)
    args = setup(root, raw)
    extra = {"MLFLOW_TRACKING_URI": os.environ.pop("ILKD_TEST_URI")} \
        if "ILKD_TEST_URI" in os.environ else {}
    proc = stage(root, *args, **extra)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # it failed before any training: no result or model folder was started (below)
    instance = args[2] if len(args) > 2 else None
    if instance:
        folder = f"{args[0]}/{instance}-0" if "--seed" in args else f"{args[0]}/{instance}"
        assert not (root / "results" / folder).exists()
        assert not (root / "models" / folder).exists()


def test_imagefolder_problems_fail_in_prepare(tmp_path, base_raw):
    for case, folders, message in [
        ("no test split", {"train": ["a", "b"]}, "needs a 'test' folder"),
        ("mismatched classes", {"train": ["a", "b"], "test": ["a", "c"]},
         "class folders differ between train and test"),
    ]:
        root = tmp_path / case.replace(" ", "_")
        for split, classes in folders.items():
            _images(root / "images", split, classes)
        raw = tiny_raw(base_raw)
        raw["data"].update(name="imagefolder", root=str(root / "images"), train_per_class=None)
        (root / "params.yaml").write_text(yaml.safe_dump(raw))
        proc = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=root,
                              env=env_for(root), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert not (root / "data").exists()
