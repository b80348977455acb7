"""MLflow logging for every stage run (params, per-epoch metrics, tags, artifacts).

DVC outputs are the source of truth; MLflow is the browsable log. Where it logs to is
:mod:`pipeline.core.store`; the parent runs over seeds are :mod:`pipeline.core.parents`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.core.parents import log_inputs
from pipeline.core.store import (
    check_reachable,
    git_state,
    repo_root,
    resolve_tracking_uri,
    source_tags,
)


def _stringify(value: Any) -> str:
    return str(value)[:6000]


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI's runs table


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
        resumed = run_id is not None and self._exists(run_id)
        try:
            # a Ctrl-C while the store writes the RUNNING run acts once its id is known
            with signals_deferred():
                if resumed:
                    self.run_id = run_id
                    self.client.update_run(run_id, status="RUNNING")
                else:
                    run = self.client.create_run(self.experiment_id, run_name=run_name,
                                                 tags=all_tags)
                    self.run_id = run.info.run_id
            if not resumed:
                self._log_params(params)
        except BaseException as exc:  # Ctrl-C here: the run ends KILLED, not RUNNING
            if hasattr(self, "run_id"):
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
