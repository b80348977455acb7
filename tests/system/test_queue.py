"""Many runs through DVC's own experiment queue with 2 workers, logging to one MLflow store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ..helpers import clean_env, dvc, sh, tiny_raw
from ..helpers import make_dvc_project as make_project

WAIT_S = 420  # two tiny runs take ~15 s here; a slow shared CI machine gets a wide margin


def start_workers(root: Path, jobs: int) -> None:
    """``dvc queue start``, its output to a file: the workers it forks inherit the caller's
    stdout, so with a pipe (capture_output) the call would only return when they exit."""
    with open(root / "queue-start.log", "ab") as log:
        subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)],
                       cwd=root, env=clean_env(), stdin=subprocess.DEVNULL, stdout=log,
                       stderr=subprocess.STDOUT, timeout=120, check=True)


def queue_logs(root: Path) -> str:
    """The workers' and the experiments' own logs, the tail of each (for a failure message)."""
    exps = root / ".dvc" / "tmp" / "exps"
    parts = []
    for path in sorted([*exps.glob("celery/*.out"), *exps.glob("run/*/*.out")]):
        parts.append(f"--- {path.relative_to(root)}\n{path.read_text(errors='replace')[-2000:]}")
    return "\n".join(parts) or "(no worker or experiment logs)"


def stop_workers(root: Path) -> None:
    """``dvc queue stop --kill``, then a signal to any worker still alive after 30 s.

    DVC's workers stop themselves 10 s after the queue empties, but once in CI they did
    not within 900 s (``dvc queue start``, with its output captured, never returned: the
    workers it forks hold that pipe). Our best guess is the first worker deleting the
    broker folder on its way out while the second polls it. So the test waits on the
    tasks, not on the workers, and makes sure none outlives it.
    """
    try:
        dvc(root, "queue", "stop", "--kill", check=False, timeout=120)
    except subprocess.TimeoutExpired:
        pass  # the signals below still end the workers
    pids = _worker_pids(root)
    deadline = time.monotonic() + 30
    while pids and time.monotonic() < deadline:
        time.sleep(0.5)
        pids = [pid for pid in pids if _is_worker(pid)]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def _worker_pids(root: Path) -> list[int]:
    """Workers DVC started here that have not exited (their info file has no return code)."""
    pids = []
    for path in (root / ".dvc" / "tmp" / "exps" / "celery").glob("dvc-exp-worker-*.json"):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):  # being rewritten
            continue
        if info.get("returncode") is None and _is_worker(info["pid"]):
            pids.append(info["pid"])
    return pids


def _is_worker(pid: int) -> bool:
    """Still alive and still a DVC queue worker (not a reused pid)."""
    try:
        return b"queue-worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_for_queue(root: Path, timeout: float) -> str:
    """The final ``dvc queue status`` once nothing is queued or running."""
    deadline = time.monotonic() + timeout
    while True:
        status = dvc(root, "queue", "status", timeout=120).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        if time.monotonic() > deadline:
            pytest.fail(f"the queue did not finish in {timeout:.0f} s:\n{status}\n{queue_logs(root)}")
        time.sleep(3)


def test_two_worker_queue_lands_every_run_in_the_workspace_store(tmp_path, base_raw,
                                                                migrated_db):
    raw = tiny_raw(base_raw)
    raw["tune"]["enabled"] = False
    root = make_project(tmp_path / "proj", raw, migrated_db)
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\ncheckpoints/\nqueue-start.log\n")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny")
    targets = ["dag/baselines/dvc.yaml:baselines@ce-0"]
    for lr in ("0.02", "0.1"):
        dvc(root, "exp", "run", "--queue", "-n", f"lr-{lr}", "-S", f"student.train.lr={lr}",
            *targets)
    try:
        start_workers(root, 2)
        status = wait_for_queue(root, WAIT_S)
    finally:  # no worker outlives the test, whatever happened
        stop_workers(root)
    assert status.count("Success") == 2, f"{status}\n{queue_logs(root)}"

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
