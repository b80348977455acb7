"""MLflow logging for every stage run (params, per-epoch metrics, tags, artifacts).

DVC outputs are the source of truth; MLflow is the browsable log. The tracking
URI is ``MLFLOW_TRACKING_URI`` when set, else an *absolute*
``sqlite:///<repo root>/mlflow.db`` (a relative one inside a queued DVC
experiment would write into a temp folder that DVC deletes). Artifacts of the
SQLite store go to ``<repo root>/mlartifacts`` for the same reason.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
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


def _stringify(value: Any) -> str:
    return str(value)[:6000]


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI's runs table
PARENT_ROLE, CHILD_ROLE = "parent", "seed"


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is left (main thread, POSIX): what the block
    records cannot be cut short; a signal that came meanwhile acts right after it."""
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    if not (main and hasattr(signal, "pthread_sigmask")):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Tracker:
    """One MLflow run, created or reopened by id (a resumed stage continues its run).

    A context manager: leaving the block marks the run FINISHED, or FAILED / KILLED
    (interrupted) with the reason in the tag ``failure_reason``, and re-raises.
    """

    def __init__(self, experiment: str, run_name: str, tags: dict[str, str],
                 params: dict[str, Any], run_id: str | None = None,
                 description: str = "") -> None:
        self.model_ids: dict[str, str] = {}  # logged models whose metrics are this run's
        from mlflow.tracking import MlflowClient

        self.uri = resolve_tracking_uri()
        check_reachable(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        root = repo_root()
        all_tags = {**tags, **git_state(root), **source_tags()}
        if description:
            all_tags["mlflow.note.content"] = description
        if os.environ.get("DVC_EXP_NAME"):
            all_tags["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
        self.experiment_id = self._experiment(experiment, root)
        if run_id is not None and self._exists(run_id):
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
            try:
                self._log_params(params)
            except BaseException as exc:  # Ctrl-C here: the run ends KILLED, not RUNNING
                self.__exit__(type(exc), exc, exc.__traceback__)
                raise

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> bool:
        from .errors import TrainingDiverged

        with signals_deferred():  # a second Ctrl-C must not leave the run RUNNING
            if exc is None:
                self.finish("FINISHED")
            elif isinstance(exc, KeyboardInterrupt):
                self.set_tags({"failure_reason": "interrupted"})
                self.finish("KILLED")
            else:
                reason = str(exc) if isinstance(exc, TrainingDiverged) else f"{kind.__name__}: {exc}"
                self.set_tags({"failure_reason": reason[:5000]})
                self.finish("FAILED")
        return False

    def _experiment(self, name: str, root: Path) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            if found.tags.get("mlflow.experimentKind") is None:
                for key, value in EXPERIMENT_KIND.items():
                    self.client.set_experiment_tag(found.experiment_id, key, value)
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:"):
            location = (root / "mlartifacts").as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location,
                                                 tags=EXPERIMENT_KIND)
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

    def open_models(self, names: list[str], run_name: str,
                    known: dict[str, str] | None = None) -> dict[str, str]:
        """MLflow 3 logged models for the run's trained models, created before training so
        every epoch's metrics are linked to the first (the Models page shows its curve and
        final metrics); ``known``: the ids a resumed run created earlier."""
        import re

        self.model_ids = dict(known or {})
        for name in names:
            if name not in self.model_ids:
                label = run_name if len(names) == 1 else f"{run_name}-{name}"
                model = self.client.create_logged_model(
                    self.experiment_id, name=re.sub(r"[^\w@-]", "-", label),
                    source_run_id=self.run_id, model_type="classifier")
                self.model_ids[name] = model.model_id
        return self.model_ids

    def log_epoch(self, row: dict[str, float]) -> None:
        from mlflow.entities import Metric

        step, stamp = int(row["epoch"]), int(time.time() * 1000)
        linked = next(iter(self.model_ids.values()), None)
        metrics = [Metric(k, float(v), stamp, step, model_id=linked)
                   for k, v in row.items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def sync(self, history: Iterable[dict[str, float]]) -> None:
        """Log epochs a killed process checkpointed but did not get to log."""
        done = self.logged_steps()
        for row in history:
            if int(row["epoch"]) not in done:
                self.log_epoch(row)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None,
                    model_id: str | None = None) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(k, float(v), stamp, step or 0, model_id=model_id) for k, v in metrics.items()])

    def log_dataset(self, meta: dict[str, Any], source: str) -> None:
        """The prepared dataset as the run's training input (the runs table's Dataset column).

        MLflow keeps a digest of at most 36 characters; the full sha256 is in the profile.
        """
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        profile = {"sizes": meta["sizes"], "classes": len(meta["classes"]),
                   "shape": meta["shape"], "sha256": meta["sha256"]}
        dataset = Dataset(name=meta["dataset"], digest=meta["sha256"][:36], source_type="local",
                          source=source, profile=json.dumps(profile))
        inputs = [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])]
        log_inputs(self.client, self.run_id, inputs)

    def log_model(self, model: Any, name: str, input_example: Any,
                  registered_name: str | None = None) -> str:
        """Upload a trained model into its logged model (see :meth:`open_models`) and mark it
        ready; with ``registered_name`` also a new version in the Model Registry.

        Pickled (``serialization_format="pickle"``) with pinned requirements: the export format
        and requirement inference take seconds per model. Loading needs this project
        installed (``pip install -e .``), which defines the architectures.
        """
        import logging

        import mlflow.pytorch
        import torch

        model_id = self.model_ids.get(name)
        if model_id and self.client.get_logged_model(model_id).status == "READY":
            return model_id  # uploaded by an earlier process of this run (rerun after the end)
        # a process stopped inside an earlier upload may have linked the model to the run
        # already: linking it again fails on the store's unique key, so the upload goes on
        # without the link
        outputs = self.client.get_run(self.run_id).outputs if model_id else None
        linked = any(o.model_id == model_id for o in (outputs.model_outputs if outputs else []))
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)  # the pickle warning
        mlflow.set_tracking_uri(self.uri)
        info = mlflow.pytorch.log_model(
            model, name=name, input_example=input_example,
            run_id=None if linked else self.run_id,
            model_id=model_id, serialization_format="pickle",
            registered_model_name=registered_name, await_registration_for=0,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        return info.model_id

    def model_version(self, name: str, run_id: str) -> str:
        """The registered version of ``name`` logged by ``run_id`` ("none" if not registered)."""
        try:
            found = self.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
        except Exception:  # no such registered model yet
            return "none"
        return str(max(int(v.version) for v in found)) if found else "none"

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, value)

    @contextmanager
    def system_metrics(self, on: bool, interval: float = 10.0) -> Iterator[None]:
        """With ``on``, MLflow samples CPU, memory and (with ``nvidia-ml-py``) GPU utilisation
        and memory into this run every ``interval`` seconds (``system/...`` metrics), so
        the UI shows whether the GPU was busy. Training runs turn it on for CUDA devices:
        on a CPU the stages are short and the sampler would only cost."""
        if not on:
            yield
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(self.run_id, sampling_interval=interval,
                                       resume_logging=True, tracking_uri=self.uri)
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def describe(self) -> dict[str, str]:
        return {"run_id": self.run_id, "experiment_id": self.experiment_id,
                "tracking_uri": self.uri}


def update_parent(client: Any, experiment_id: str, child_id: str, group: str,
                  name: str, metrics: dict[str, float], config: str = "",
                  description: str = "") -> str:
    """Make ``child_id`` a child of its configuration's one parent run, holding mean and
    std over that configuration's finished children of every final metric; return the
    parent's id.

    A parent is keyed by the group (stage, method/variant) *and* ``config``, the fingerprint
    of what its seeds share (params read, data, teacher): an ablation gets a parent of its
    own, and a summary never mixes two configurations. Idempotent and safe with concurrent
    seeds: each seed creates a parent only if it finds none, then every seed adopts the
    oldest parent and deletes any younger duplicate, so racing seeds converge on one.
    Metrics are logged at step = number of children, so the most complete summary is the
    one MLflow shows.
    """
    import numpy as np
    from mlflow.entities import Metric

    same = f"tags.ilkd_group = '{group}' and tags.ilkd_config = '{config}'"

    def parents() -> list:
        found = client.search_runs([experiment_id], filter_string=(
            f"{same} and tags.ilkd_role = '{PARENT_ROLE}'"))
        return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))

    if not parents():
        client.create_run(experiment_id, run_name=name, tags={
            "ilkd_group": group, "ilkd_config": config, "ilkd_role": PARENT_ROLE,
            "mlflow.note.content": description or f"{name}: mean and std over seeds"})
    parent, *duplicates = parents()
    for extra in duplicates:
        try:
            client.delete_run(extra.info.run_id)
        except Exception:  # another seed deleted it first
            pass
    client.set_tag(child_id, "mlflow.parentRunId", parent.info.run_id)
    if "mlflow.source.name" not in parent.data.tags:
        _inherit_source(client, child_id, parent.info.run_id)
    children = client.search_runs([experiment_id], filter_string=(
        f"{same} and tags.ilkd_role = '{CHILD_ROLE}' and attributes.status = 'FINISHED'"))
    latest: dict[str, Any] = {}
    for run in sorted(children, key=lambda r: r.info.start_time):
        latest[run.data.tags.get("seed", run.info.run_id)] = run  # a rerun replaces its seed
    values: dict[str, list[float]] = {}
    for run in latest.values():
        for key in metrics:
            if key in run.data.metrics:
                values.setdefault(key, []).append(run.data.metrics[key])
    stamp, step = int(time.time() * 1000), len(latest)
    summary = []
    for key, vals in values.items():
        summary.append(Metric(f"{key}_mean", float(np.mean(vals)), stamp, step))
        summary.append(Metric(f"{key}_std", float(np.std(vals, ddof=1)) if len(vals) > 1
                              else 0.0, stamp, step))
    summary.append(Metric("seeds", float(step), stamp, step))
    for i in range(0, len(summary), 500):
        client.log_batch(parent.info.run_id, metrics=summary[i:i + 500])
    client.set_terminated(parent.info.run_id, "FINISHED")
    return parent.info.run_id


def _inherit_source(client: Any, child_id: str, parent_id: str) -> None:
    """The parent shows its seeds' Source and Dataset in the runs table (same command, commit
    and prepared data for every seed)."""
    from mlflow.entities import RunTag

    child = client.get_run(child_id)
    tags = [RunTag(key, value) for key, value in child.data.tags.items()
            if key.startswith("mlflow.source.") or key == "mlflow.user"]
    # seeds finishing together both get here: a batch retries an insert another process made
    # first (set_tag does not, and one seed failed with a UNIQUE constraint error)
    client.log_batch(parent_id, tags=tags)
    inputs = child.inputs.dataset_inputs if child.inputs else []
    if inputs:
        log_inputs(client, parent_id, list(inputs))


def log_inputs(client: Any, run_id: str, inputs: list) -> None:
    """``client.log_inputs``, once more after a moment if it fails: two stages logging the same
    new dataset (or linking it to one parent run) at once make MLflow's store insert the row
    twice and one insert fails; the row exists then, so the second call succeeds."""
    try:
        client.log_inputs(run_id, datasets=inputs)
    except Exception:  # noqa: BLE001
        time.sleep(0.5)
        client.log_inputs(run_id, datasets=inputs)


class NullTracker:
    """What ranks other than 0 of a multi-process run use: they log nothing."""

    run_id = ""

    def __enter__(self) -> NullTracker:
        return self

    def __exit__(self, *exc: object) -> bool:
        return False

    def system_metrics(self, on: bool, interval: float = 10.0) -> contextlib.nullcontext:
        return contextlib.nullcontext()

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None
