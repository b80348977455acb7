"""Where runs are recorded and what identifies them: the tracking URI, the experiment and
model names, the run pointer each stage leaves in its results folder, and the source tags
(commit, command) every run carries.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set, else an *absolute*
``sqlite:///<repo root>/mlflow.db`` (a relative one inside a queued DVC experiment would
write into a temp folder that DVC deletes). Artifacts of the SQLite store go to
``<repo root>/mlartifacts`` for the same reason.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlparse

from pipeline.core.errors import TrackingError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

RUN_FILE = "mlflow_run.json"


def experiment_name(profile: str, dataset: str) -> str:
    """The MLflow experiment every run of a profile logs to: ``ilkd-quick-digits``."""
    return f"ilkd-{profile}-{dataset}"


def teacher_model_name(profile: str) -> str:
    """The Model Registry entry of a profile's teachers: a new version per retraining."""
    return f"ilkd-{profile}-teacher"


def recorded_run_id(results: Path) -> str | None:
    """The MLflow run a stage recorded in ``<results>/mlflow_run.json`` (None when absent)."""
    import json

    try:
        return json.loads((results / RUN_FILE).read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return None


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
    """The commit, whether tracked files differ from it, and the remote (if any)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        remote = git("remote", "get-url", "origin")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    state = {"git_commit": commit or "none", "git_dirty": str(dirty).lower()}
    if commit:  # MLflow's own tags: the runs table's Source column shows them
        state.update({"mlflow.source.git.commit": commit, "mlflow.source.git.branch": branch})
    if remote:
        state["mlflow.source.git.repoURL"] = remote
    return state


def source_tags() -> dict[str, str]:
    """``mlflow.source.*``: the command that made the run (``python -m stages.train ...``)."""
    import sys

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None and spec.name else sys.argv[0]
    command = " ".join([program, *sys.argv[1:]])
    return {"mlflow.source.name": command[:500], "mlflow.source.type": "LOCAL"}
