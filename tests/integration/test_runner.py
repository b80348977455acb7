"""A stage instance end to end in-process: outputs, MLflow run, teacher checks, tracking errors."""

from __future__ import annotations

import json
import socket
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline.core.config import parse_params
from pipeline.core.errors import CheckpointError, TrackingError
from pipeline.core.models import load_teacher
from pipeline.core.runs import RunSpec
from pipeline.core.store import check_reachable, resolve_tracking_uri
from pipeline.core.tracking import Tracker
from pipeline.prepare.datasets import prepare
from pipeline.train.runner import run


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny, mlflow_uri):
    monkeypatch.chdir(tmp_path)
    params = parse_params(tiny)
    prepare(params.data, tmp_path / "data/prepared")
    return tmp_path, params


def test_teacher_then_kd_student(workdir, mlflow_uri):
    root, params = workdir
    metrics = run(RunSpec("teacher", "ce", seed=0), params, root)
    for key in ("test_acc", "test_nll", "test_ece", "test_top5"):
        assert key in metrics
    assert (root / "models/teacher/seed-0/model.pt").is_file()
    assert (root / "results/teacher/seed-0/curves.png").stat().st_size > 1000
    saved = json.loads((root / "results/teacher/seed-0/metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    run_info = json.loads((root / "results/teacher/seed-0/mlflow_run.json").read_text())

    client = MlflowClient(mlflow_uri)
    mlrun = client.get_run(run_info["run_id"])
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.tags["stage"] == "teacher" and mlrun.data.tags["method"] == "ce"
    assert {"git_commit", "git_dirty", "params_hash", "seed"} <= set(mlrun.data.tags)
    assert mlrun.data.params["train.lr"] == str(params.teacher.train.lr)
    assert mlrun.data.params["model.arch"] == "small_cnn"
    history = client.get_metric_history(run_info["run_id"], "test_acc")
    assert sorted(m.step for m in history) == [1, 2]
    assert history[-1].value == pytest.approx(metrics["test_acc"])
    artifacts = {a.path for a in client.list_artifacts(run_info["run_id"])}
    assert {"metrics.json", "history.csv", "curves.png", "model"} <= artifacts

    kd = run(RunSpec("kd_ablation", "kd", "shuffled_non_gt", seed=0), params, root)
    assert (root / "results/kd_ablation/shuffled_non_gt-0/metrics.json").is_file()
    assert kd["epochs"] == 2


def test_rerun_with_a_finished_checkpoint_reuses_the_run(workdir, mlflow_uri):
    root, params = workdir
    run(RunSpec("baselines", "ce", seed=0), params, root)
    first = json.loads((root / "results/baselines/ce-0/mlflow_run.json").read_text())
    run(RunSpec("baselines", "ce", seed=0), params, root)
    second = json.loads((root / "results/baselines/ce-0/mlflow_run.json").read_text())
    assert first["run_id"] == second["run_id"]
    steps = MlflowClient(mlflow_uri).get_metric_history(first["run_id"], "train_loss")
    assert sorted(m.step for m in steps) == [1, 2]  # no duplicated epochs


def test_kd_without_teacher_fails_before_training(workdir):
    root, params = workdir
    with pytest.raises(CheckpointError,
                       match=r"models/teacher/seed-0/model\.pt: teacher model not found"):
        run(RunSpec("kd_ablation", "kd", "full", seed=0), params, root)
    assert not (root / "results").exists()


def test_teacher_arch_mismatch(workdir, tiny):
    root, params = workdir
    run(RunSpec("teacher", "ce", seed=0), params, root)
    tiny["teacher"]["model"]["width"] = 0.5
    other = parse_params(tiny)
    with pytest.raises(CheckpointError, match=r"teacher is small_cnn \(width 0.25\) but params"):
        load_teacher(root / "models/teacher/seed-0/model.pt", "x", 10, 1, other.teacher.model)
    with pytest.raises(CheckpointError, match="trained on other data"):
        load_teacher(root / "models/teacher/seed-0/model.pt", "other-sha", 10, 1, params.teacher.model)
    model = load_teacher(root / "models/teacher/seed-0/model.pt",
                         json.loads((root / "data/prepared/meta.json").read_text())["sha256"],
                         10, 1, params.teacher.model)
    assert isinstance(model, torch.nn.Module)


def test_tracking_uri_defaults_to_absolute_sqlite(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_unreachable_tracking_server_fails_fast(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tic = time.monotonic()
    with pytest.raises(TrackingError, match=f"MLFLOW_TRACKING_URI={uri}: tracking server not"):
        Tracker("x", "y", {}, {})
    assert time.monotonic() - tic < 30
    check_reachable("sqlite:///anything.db")  # local stores need no check


def test_instance_code_follows_imports_and_its_fingerprint_every_edit(tmp_path):
    """A scratch project whose import graph is known by hand: stages/train.py imports
    pipeline.core.config (and so pipeline/__init__ and pipeline/core/__init__), lazily
    pipeline.train.engine inside a function, and not pipeline.tools (a TYPE_CHECKING
    import); the method's loss kd imports targets relatively, its registry entry the
    schema."""
    from pipeline.core.code import code_fingerprint, instance_code

    files = {
        "pipeline/__init__.py": "", "pipeline/core/__init__.py": "",
        "pipeline/core/config.py": "import yaml\n",
        "pipeline/train/__init__.py": "", "pipeline/train/engine.py": "x = 1\n",
        "pipeline/tools/__init__.py": "", "pipeline/tools/parallel.py": "y = 1\n",
        "pipeline/methods/__init__.py": "", "pipeline/methods/ce.py": "",
        "pipeline/methods/kd.py": "from .targets import t\n",
        "pipeline/methods/targets.py": "t = 1\n",
        "pipeline/methods/registry/__init__.py": "",
        "pipeline/methods/registry/kd.py": "from pipeline.core.schema import Section\n",
        "pipeline/methods/registry/ce.py": "from pipeline.core.schema import Section\n",
        "pipeline/core/schema.py": "import pydantic\n",
        "stages/__init__.py": "", "stages/train.py": (
            "from typing import TYPE_CHECKING\nfrom pipeline.core import config\n"
            "if TYPE_CHECKING:\n    from pipeline.tools import parallel\n"
            "def f():\n    from pipeline.train.engine import x\n"),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    got = [p.as_posix() for p in instance_code("stages.train", "kd", tmp_path)]
    assert got == ["pipeline/__init__.py", "pipeline/core/__init__.py",
                   "pipeline/core/config.py", "pipeline/core/schema.py",
                   "pipeline/methods/__init__.py", "pipeline/methods/kd.py",
                   "pipeline/methods/registry/kd.py", "pipeline/methods/targets.py",
                   "pipeline/train/__init__.py", "pipeline/train/engine.py", "stages/train.py"]
    ce = instance_code("stages.train", "ce", tmp_path)
    before = code_fingerprint(ce, tmp_path)
    for name in ("pipeline/tools/parallel.py", "pipeline/methods/targets.py"):
        (tmp_path / name).write_text("changed = True\n")  # code a CE instance does not run
    assert code_fingerprint(ce, tmp_path) == before
    seen = {before}
    for name in ("pipeline/methods/ce.py", "stages/train.py", "pipeline/train/engine.py"):
        (tmp_path / name).write_text((tmp_path / name).read_text() + "# edited\n")
        seen.add(code_fingerprint(ce, tmp_path))
    assert len(seen) == 4  # every edit of code it runs gave a new fingerprint


def test_rerun_after_a_code_change_retrains(workdir, mlflow_uri, monkeypatch, capsys):
    """DVC reruns a stage whose code changed; its finished checkpoint must not stand in."""
    from pipeline.train import runner

    root, params = workdir
    run(RunSpec("baselines", "ce", seed=0), params, root)
    first = json.loads((root / "results/baselines/ce-0/mlflow_run.json").read_text())
    monkeypatch.setattr(runner, "code_fingerprint", lambda spec: "edited-code")
    run(RunSpec("baselines", "ce", seed=0), params, root)
    second = json.loads((root / "results/baselines/ce-0/mlflow_run.json").read_text())
    assert "written for other params or code, starting from scratch" in capsys.readouterr().out
    assert second["run_id"] != first["run_id"]  # a new run that trained every epoch
    steps = MlflowClient(mlflow_uri).get_metric_history(second["run_id"], "train_loss")
    assert sorted(m.step for m in steps) == [1, 2]


def _digests(root, spec: RunSpec) -> dict:
    import hashlib

    files = [p for kind in ("results", "models") for p in (root / spec.folder(kind)).rglob("*")
             if p.is_file() and p.name != "mlflow_run.json"]
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


def test_a_retrain_from_scratch_writes_identical_outputs(workdir):
    """Every DVC output but the MLflow run pointer is a function of code, data, params and
    seed: no wall time in history.csv, no run id in model.pt (an identical rerun leaves
    `git diff dvc.lock` empty)."""
    import shutil

    root, params = workdir
    specs = [RunSpec("teacher", "ce", seed=0), RunSpec("baselines", "ce", seed=0),
             RunSpec("introspective", "introspective", "full", seed=0)]
    first = {}
    for spec in specs:
        run(spec, params, root)
        first.update(_digests(root, spec))
    assert any(name.endswith("model.pt") for name in first)
    assert "epoch_time_s" not in (root / "results/baselines/ce-0/history.csv").read_text()
    shutil.rmtree(root / "checkpoints")  # retrain from scratch, not resume
    second = {}
    for spec in specs:
        run(spec, params, root)
        second.update(_digests(root, spec))
    assert second == first


def test_an_ablation_gets_its_own_mlflow_parent(workdir, tiny, mlflow_uri):
    """Edit a knob, rerun, restore the edit, rerun: two parents, each summarising only its
    own configuration's seeds; the identical rerun adds no third parent."""
    import copy
    import shutil

    from ..helpers import REPO

    root, params = workdir
    shutil.copytree(REPO / "presets", root / "presets")  # what the descriptions compare with
    edited = copy.deepcopy(tiny)
    edited["student"]["train"]["weight_decay"] = 0.0004
    accs: dict[float, list[float]] = {}
    for current in (params, parse_params(edited), params):
        shutil.rmtree(root / "checkpoints", ignore_errors=True)
        wd = current.student.train.weight_decay
        accs[wd] = [run(RunSpec("baselines", "ce", seed=s), current, root)["test_acc"]
                    for s in (0, 1)]
    client = MlflowClient(mlflow_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, "tags.ilkd_role = 'parent'")
    assert len(parents) == 2
    by_name = {p.info.run_name: p for p in parents}
    (ablation,) = [n for n, p in by_name.items()
                   if "train.weight_decay=0.0004" in p.data.tags["mlflow.note.content"]]
    (default,) = [n for n in by_name if n != ablation]
    assert "weight_decay" not in default and default.startswith("baselines@ce [")
    assert "progress" not in default  # what does not change results is not a difference
    for name, wd in ((default, params.student.train.weight_decay), (ablation, 0.0004)):
        parent = by_name[name]
        assert parent.data.metrics["test_acc_mean"] == pytest.approx(sum(accs[wd]) / 2)
        assert parent.data.metrics["seeds"] == 2
        children = client.search_runs(experiments, (
            f"tags.mlflow.parentRunId = '{parent.info.run_id}'"))
        assert {c.data.params["train.weight_decay"] for c in children} == {str(wd)}


def test_ctrl_c_before_the_first_epoch_leaves_the_run_killed_not_running(workdir, mlflow_uri,
                                                                         monkeypatch):
    """A stop that lands while the new run logs its dataset and models (before training,
    before the engine's own handler) still ends the MLflow run: KILLED, never RUNNING."""
    root, params = workdir

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Tracker, "log_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(RunSpec("baselines", "ce", seed=0), params, root)
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [(r.info.run_name, r.info.status) for r in runs] == [("baselines@ce-0", "KILLED")]
