"""One training run of one DVC stage instance, from params to outputs.

``run(spec, params)`` does, in order: load and verify the prepared data (and the
teacher, if the method needs one), build the method, open (or reopen) the MLflow
run, train through the engine with per-epoch checkpoints, then write the DVC
outputs atomically and log them as artifacts. Every check that can fail on bad
input runs before the first training step.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import distributed, engine
from .config import ModelConfig, Params, TrainConfig, fingerprint, flatten
from .data import PREPARED_DIR, load_prepared
from .errors import ConfigError, TrainingDiverged
from .io import atomic_torch_save, atomic_write_csv, atomic_write_json
from .methods import REGISTRY, Teacher, build_method
from .metrics import reliability_bins
from .models import TEACHER_FILE, build_model, load_teacher
from .report import save_figure, training_curves
from .tracking import RUN_FILE, NullTracker, Tracker

NOT_FINAL_METRICS = {"epoch", "lr", "epoch_time_s"}


@dataclass(frozen=True)
class RunSpec:
    """Which stage instance to run: ``baselines@kd-0`` is ``RunSpec("baselines", "kd", seed=0)``."""

    stage: str
    method: str
    variant: str = "full"
    seed: int = 0
    group: str = ""  # tune: one folder per trial, holding a run per tuning seed

    @property
    def instance(self) -> str:
        if self.stage == "teacher":
            return ""
        name = self.method if self.stage in ("baselines", "tuned", "tune") else self.variant
        return f"{name}-{self.seed}"

    def folder(self, kind: str) -> Path:
        return Path(kind, self.stage, self.group, self.instance)

    @property
    def run_name(self) -> str:
        if not self.instance:
            return self.stage
        return f"{self.stage}@{self.group + '/' if self.group else ''}{self.instance}"


def _role(spec: RunSpec, params: Params) -> tuple[ModelConfig, TrainConfig]:
    if spec.stage == "teacher":
        return params.teacher.model, params.teacher.train
    return params.student.model, params.student.train


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _final_metrics(history: list[dict[str, float]], spec: RunSpec) -> dict[str, Any]:
    last = history[-1]
    metrics: dict[str, Any] = {k: v for k, v in last.items()
                               if k not in NOT_FINAL_METRICS and not k.startswith("train_")}
    metrics.update(train_acc=last["train_acc"], train_loss=last["train_loss"],
                   epochs=int(last["epoch"]), seed=spec.seed)
    return metrics


def run(spec: RunSpec, params: Params, root: Path | None = None) -> dict[str, Any]:
    """Train one stage instance; returns its final metrics."""
    root = root or Path.cwd()
    os.chdir(root)
    if spec.method not in REGISTRY:
        raise ConfigError(f"unknown method '{spec.method}' (known: {', '.join(REGISTRY)})")
    prepared = load_prepared(PREPARED_DIR)
    model_cfg, train_cfg = _role(spec, params)
    data_sha = prepared.meta["sha256"]
    teacher = None
    teacher_sha = None
    if REGISTRY[spec.method].teacher is Teacher.REQUIRED:
        teacher = load_teacher(TEACHER_FILE, data_sha, prepared.num_classes,
                               prepared.in_channels, params.teacher.model)
        teacher_sha = _sha256(TEACHER_FILE)
    rank, world = distributed.setup()
    device = engine.configure_runtime(params.runtime)
    accel = engine.accel_for(params.runtime, device)

    engine.seed_everything(spec.seed)
    method = build_method(
        spec.method, params,
        lambda: build_model(model_cfg.arch, prepared.num_classes, prepared.in_channels,
                            model_cfg.width),
        teacher, spec.variant)
    sections = {"data": params.data, "runtime": params.runtime,
                "model": model_cfg, "train": train_cfg}
    if spec.method in Params.model_fields:
        sections[spec.method] = getattr(params, spec.method)
    logged = {k: v.model_dump(mode="json") for k, v in sections.items()}
    run_hash = fingerprint(logged, spec.__dict__, data_sha, teacher_sha)
    checkpoint = engine.Checkpoint(spec.folder("checkpoints") / "last.pt", run_hash)
    resume = checkpoint.load()

    tags = {"stage": spec.stage, "method": spec.method, "variant": spec.variant,
            "seed": str(spec.seed), "instance": spec.run_name, "params_hash": run_hash,
            "profile": params.profile, "dataset": prepared.meta["dataset"],
            "device": device.type, "world_size": str(world)}
    tracker: Tracker | NullTracker = NullTracker()
    if rank == 0:
        tracker = Tracker(f"ilkd-{params.profile}-{prepared.meta['dataset']}", spec.run_name,
                          tags, {**flatten(logged), "seed": spec.seed},
                          run_id=(resume or {}).get("extra", {}).get("run_id"))
        if resume is not None:
            tracker.sync(resume["history"])
        if world > 1:
            print(f"[ilkd] {spec.run_name}: world size {world}, global batch "
                  f"{train_cfg.batch_size} split across ranks", flush=True)

    try:
        data = engine.DeviceData(prepared, device)
        history = engine.fit(method, data, train_cfg, spec.seed, checkpoint=checkpoint,
                             resume=resume, extra={"run_id": tracker.run_id},
                             on_epoch=tracker.log_epoch, progress=params.runtime.progress,
                             label=spec.run_name, accel=accel)
        metrics = _final_metrics(history, spec)
        if rank != 0:
            distributed.cleanup()
            return metrics
        extra_metrics, extra_files = method.report(data, spec.folder("results"))
        metrics.update(extra_metrics)
        if extra_metrics:
            tracker.log_metrics(extra_metrics, step=metrics["epochs"])
        write_outputs(spec, method, data, history, metrics, tracker, model_cfg, data_sha, accel)
        for path in extra_files:
            tracker.log_artifact(path)
    except TrainingDiverged as exc:
        tracker.set_tags({"failure_reason": str(exc)[:5000]})
        tracker.finish("FAILED")
        raise
    except KeyboardInterrupt:
        tracker.set_tags({"failure_reason": "interrupted"})
        tracker.finish("KILLED")
        raise
    except BaseException as exc:
        tracker.set_tags({"failure_reason": f"{type(exc).__name__}: {exc}"[:5000]})
        tracker.finish("FAILED")
        raise
    tracker.finish("FINISHED")
    distributed.cleanup()
    return metrics


def write_outputs(spec: RunSpec, method: Any, data: engine.DeviceData,
                  history: list[dict[str, float]],
                  metrics: dict[str, Any], tracker: Tracker, model_cfg: ModelConfig,
                  data_sha: str, accel: engine.Accel) -> None:
    """DVC outputs (each atomic), then the same files as MLflow artifacts."""
    results, models = spec.folder("results"), spec.folder("models")
    model_file = models / "model.pt"
    atomic_torch_save(model_file, {
        "state_dict": {k: m.state_dict() for k, m in method.models.items()},
        "meta": {"arch": model_cfg.arch, "width": model_cfg.width, "data_sha256": data_sha,
                 "method": spec.method, "variant": spec.variant, "seed": spec.seed,
                 "mlflow_run_id": tracker.run_id},
    })
    atomic_write_csv(results / "history.csv", history)
    model = next(iter(method.evaluated().values()))  # DML: peer0
    logits = engine.predict(model, data, "test", 1024, accel)
    atomic_write_json(results / "reliability.json",
                      reliability_bins(logits.softmax(1), data.y["test"]))
    save_figure(training_curves(history, spec.run_name), results / "curves.png")
    atomic_write_json(results / RUN_FILE, {**tracker.describe(), "run_name": spec.run_name})
    atomic_write_json(results / "metrics.json", metrics)
    for name in ("metrics.json", "history.csv", "curves.png", "reliability.json"):
        tracker.log_artifact(results / name)
    tracker.log_artifact(model_file, "model")


__all__ = ["RunSpec", "run"]
