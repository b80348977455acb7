"""Many runs through DVC's own experiment queue with 2 workers, logging to one MLflow store."""

from __future__ import annotations

import json
import time

import pytest
from mlflow.tracking import MlflowClient

from .conftest import tiny_raw
from .helpers import dvc, sh
from .helpers import make_dvc_project as make_project

pytestmark = pytest.mark.slow


def test_two_worker_queue_lands_every_run_in_the_workspace_store(tmp_path, base_raw,
                                                                migrated_db):
    raw = tiny_raw(base_raw)
    raw["tune"]["enabled"] = False
    root = make_project(tmp_path / "proj", raw, migrated_db)
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\ncheckpoints/\n")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny")
    targets = ["dag/baselines/dvc.yaml:baselines@ce-0"]
    for lr in ("0.02", "0.1"):
        dvc(root, "exp", "run", "--queue", "-n", f"lr-{lr}", "-S", f"student.train.lr={lr}",
            *targets)
    dvc(root, "queue", "start", "-j", "2")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = dvc(root, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert status.count("Success") == 2, status

    show = json.loads(dvc(root, "exp", "show", "--json").stdout)
    found = {}
    for commit in show:
        for group in commit.get("experiments") or []:
            for rev in group["revs"]:
                data = rev["data"]["metrics"]["results/baselines/ce-0/metrics.json"]["data"]
                lr = rev["data"]["params"]["params.yaml"]["data"]["student"]["train"]["lr"]
                found[rev["name"]] = (lr, data["test_acc"])
    assert {name: lr for name, (lr, _) in found.items()} == {"lr-0.02": 0.02, "lr-0.1": 0.1}

    # the temp workspaces are gone, but their MLflow runs are in the repo's own store
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    students = [r for r in runs if r.info.run_name == "baselines@ce-0"]
    assert sorted(r.data.tags["dvc_exp_name"] for r in students) == ["lr-0.02", "lr-0.1"]
    assert all(r.info.status == "FINISHED" for r in students)
    for run in students:
        name = run.data.tags["dvc_exp_name"]
        assert run.data.metrics["test_acc"] == pytest.approx(found[name][1])
