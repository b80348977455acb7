"""MLflow logging for every stage run (params, per-epoch metrics, tags, artifacts).

DVC outputs are the source of truth; MLflow is the browsable log. The tracking
URI is ``MLFLOW_TRACKING_URI`` when set, else an *absolute*
``sqlite:///<repo root>/mlflow.db`` (a relative one inside a queued DVC
experiment would write into a temp folder that DVC deletes). Artifacts of the
SQLite store go to ``<repo root>/mlartifacts`` for the same reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .errors import TrackingError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

RUN_FILE = "mlflow_run.json"


def repo_root() -> Path:
    """``DVC_ROOT`` when DVC runs us, else the nearest folder holding ``dvc.yaml``."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() or (folder / ".dvc").is_dir():
            return folder
    return here


def resolve_tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{repo_root() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail before training when a remote tracking server does not answer."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "localhost", port), timeout=timeout):
            pass
    except OSError as exc:
        raise TrackingError(
            f"MLFLOW_TRACKING_URI={uri}: tracking server not reachable ({exc.strerror or exc}); "
            "start the server or unset MLFLOW_TRACKING_URI to log to the local mlflow.db"
        ) from None


def git_state(root: Path) -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit or "none", "git_dirty": str(dirty).lower()}


def _stringify(value: Any) -> str:
    return str(value)[:6000]


class Tracker:
    """One MLflow run, created or reopened by id (a resumed stage continues its run)."""

    def __init__(self, experiment: str, run_name: str, tags: dict[str, str],
                 params: dict[str, Any], run_id: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri()
        check_reachable(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        root = repo_root()
        all_tags = {**tags, **git_state(root)}
        if os.environ.get("DVC_EXP_NAME"):
            all_tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
        self.experiment_id = self._experiment(experiment, root)
        if run_id is not None and self._exists(run_id):
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
            self._log_params(params)

    def _experiment(self, name: str, root: Path) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:"):
            location = (root / "mlartifacts").as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except Exception:  # created concurrently by another stage
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def _exists(self, run_id: str) -> bool:
        try:
            self.client.get_run(run_id)
            return True
        except Exception:
            return False

    def _log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, _stringify(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def logged_steps(self, key: str = "train_loss") -> set[int]:
        return {m.step for m in self.client.get_metric_history(self.run_id, key)}

    def log_epoch(self, row: dict[str, float]) -> None:
        from mlflow.entities import Metric

        step, stamp = int(row["epoch"]), int(time.time() * 1000)
        metrics = [Metric(k, float(v), stamp, step) for k, v in row.items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def sync(self, history: Iterable[dict[str, float]]) -> None:
        """Log epochs a killed process checkpointed but did not get to log."""
        done = self.logged_steps()
        for row in history:
            if int(row["epoch"]) not in done:
                self.log_epoch(row)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), stamp, step or 0) for k, v in metrics.items()])

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def describe(self) -> dict[str, str]:
        return {"run_id": self.run_id, "experiment_id": self.experiment_id,
                "tracking_uri": self.uri}


class NullTracker:
    """What ranks other than 0 of a multi-process run use: they log nothing."""

    run_id = ""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None
