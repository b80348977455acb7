"""One training run of one DVC stage instance, from params to outputs.

``run(spec, params)`` does, in order: every check that can fail on bad input
(prepared data, teacher, params, checkpoint) in :func:`setup`, then opens (or
reopens) the MLflow run, trains through the engine with per-epoch checkpoints,
and writes the DVC outputs atomically, logging the same files to MLflow. Paths
are relative to ``root`` (the repo, where DVC runs the stage).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.core import code
from pipeline.core.config import Params, fingerprint, flatten
from pipeline.core.errors import ConfigError
from pipeline.core.io import (
    atomic_torch_save,
    atomic_write_csv,
    atomic_write_json,
    write_matrix,
)
from pipeline.core.metrics import reliability_bins
from pipeline.core.models import build_model, load_teacher
from pipeline.core.parents import child_tags, update_parent
from pipeline.core.paths import PREPARED_DIR
from pipeline.core.prepared import Prepared, load_prepared
from pipeline.core.presets import load_preset
from pipeline.core.runs import RunSpec
from pipeline.core.sections import ModelConfig, TrainConfig
from pipeline.core.store import RUN_FILE, experiment_name, recorded_run_id, teacher_model_name
from pipeline.core.tracking import NullTracker, Tracker
from pipeline.figures import explanation_grid, save_figure, similarity_heatmaps, training_curves
from pipeline.methods import REGISTRY, VARIANT_NOTES, Teacher, build_method
from pipeline.methods.base import Method
from pipeline.train import distributed, engine
from pipeline.train.teachers import teacher_file, teacher_spec
from pipeline.train.tune import tuned_params

NOT_FINAL_METRICS = {"epoch", "lr", "epoch_time_s"}
WALL_CLOCK = {"epoch_time_s"}  # logged to MLflow only (history.csv must not vary run to run)
COSMETIC = {"runtime.progress"}  # knobs that change no result
SEARCH_STAGES = ("tune", "surface")  # runs read on validation only: no logged model


@dataclass
class Setup:
    """Everything a run needs, checked before the first training step."""

    spec: RunSpec
    params: Params
    root: Path
    prepared: Prepared
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    method: Method
    logged: dict[str, Any]  # the params sections this run reads (MLflow params)
    checkpoint: engine.Checkpoint
    resume: dict[str, Any] | None
    teacher_run: str | None  # the MLflow run of the teacher a KD run distils
    config: str  # fingerprint of what the seeds of one MLflow parent share

    def path(self, kind: str) -> Path:
        return self.root / self.spec.folder(kind)


def setup(spec: RunSpec, params: Params, root: Path) -> Setup:
    if spec.method not in REGISTRY:
        raise ConfigError(f"unknown method '{spec.method}' (known: {', '.join(REGISTRY)})")
    prepared = load_prepared(root / PREPARED_DIR).for_seed(spec.seed)
    model_cfg, train_cfg = ((params.teacher.model, params.teacher.train)
                            if spec.stage == "teacher" else
                            (params.student.model, params.student.train))
    teacher, teacher_sha, teacher_run = None, None, None
    if REGISTRY[spec.method].teacher is Teacher.REQUIRED:
        source = root / teacher_file(params, spec.seed)
        teacher = load_teacher(source, prepared.meta["sha256"], prepared.num_classes,
                               prepared.in_channels, params.teacher.model,
                               prepared.meta.get("subset_seed"))
        teacher_run = recorded_run_id(root / teacher_spec(params, spec.seed).folder())
        teacher_sha = hashlib.sha256(source.read_bytes()).hexdigest()
    engine.seed_everything(spec.seed)
    method = build_method(spec.method, params, lambda: build_model(
        model_cfg.arch, prepared.num_classes, prepared.in_channels, model_cfg.width),
        teacher, spec.variant)
    logged = read_sections(params, spec)
    run_hash = fingerprint(logged, spec.__dict__, prepared.meta["sha256"], teacher_sha,
                           code_fingerprint(spec))
    # what the seeds of one MLflow parent share: an ablation (another value of a knob this
    # run reads, other data or another teacher) gets a parent of its own
    config = fingerprint(logged, {k: v for k, v in spec.__dict__.items() if k != "seed"},
                         prepared.meta["sha256"], teacher_sha)
    checkpoint = engine.Checkpoint(root / spec.folder("checkpoints") / "last.pt", run_hash)
    return Setup(spec, params, root, prepared, model_cfg, train_cfg, method, logged,
                 checkpoint, checkpoint.load(), teacher_run, config)


def read_sections(params: Params, spec: RunSpec) -> dict[str, Any]:
    """The params sections a run reads, as plain data (its MLflow params)."""
    role = params.teacher if spec.stage == "teacher" else params.student
    sections = {"data": params.data, "runtime": params.runtime, "model": role.model,
                "train": role.train, spec.method: getattr(params, spec.method)}
    return {k: v.model_dump(mode="json") for k, v in sections.items()}


def changes_from_preset(s: Setup) -> dict[str, Any] | None:
    """The knobs this run reads whose values differ from its profile's preset
    (``presets/<profile>.yaml``; a tuned run's preset carries the selected recipe), as
    ``{"student.train.weight_decay": 0.0004, ...}``; None when the profile has no preset."""
    try:
        preset = load_preset(s.params.profile)
        if s.spec.stage in ("tuned", "surface"):  # a surface point: what differs from it
            preset = tuned_params(preset, s.spec.method)
    except (ConfigError, OSError):
        return None
    mine, base = flatten(s.logged), flatten(read_sections(preset, s.spec))
    return {k: v for k, v in sorted(mine.items()) if base.get(k) != v and k not in COSMETIC}


def parent_name_and_note(s: Setup) -> tuple[str, str]:
    """The MLflow parent's name (its group, plus what differs from the preset) and
    description."""
    group = s.spec.group_name
    changed = changes_from_preset(s)
    if changed is None:
        return group, (f"{group}: mean and std over seeds (profile '{s.params.profile}' has "
                       f"no preset to compare with; configuration {s.config})")
    if not changed:
        return group, (f"{group}: mean and std over seeds, at the {s.params.profile} preset's "
                       f"values (configuration {s.config})")
    listed = ", ".join(f"{k}={v}" for k, v in changed.items())
    name = f"{group} [{listed}]"
    if len(name) > 200:
        name = f"{name[:190]}… {s.config[:8]}]"
    return name, (f"{group}: mean and std over seeds, with {listed} (the "
                  f"{s.params.profile} preset differs; configuration {s.config})")


def code_fingerprint(spec: RunSpec) -> str:
    """sha256 of the code this instance runs (its stage script's and method's import
    closure: the files ``dvc.yaml`` lists as its dependencies), part of every checkpoint's
    fingerprint.

    DVC reruns a stage when its code changes; without this the rerun would find its finished
    checkpoint (same params) and report the old code's model instead of retraining.
    """
    script = {"tune": "stages.tune", "surface": "stages.surface"}.get(spec.stage, "stages.train")
    return code.code_fingerprint(code.instance_code(script, spec.method))


def run(spec: RunSpec, params: Params, root: Path | None = None) -> dict[str, Any]:
    """Train one stage instance; returns its final metrics."""
    s = setup(spec, params, root or Path())
    rank, world = distributed.setup()
    device = engine.configure_runtime(params.runtime)
    accel = engine.accel_for(params.runtime, device)
    with open_tracker(s, device, rank, world) as tracker, \
            tracker.system_metrics(device.type == "cuda"):
        data = engine.DeviceData(s.prepared, device)
        extra = {"run_id": tracker.run_id, "model_ids": tracker.model_ids}
        history = engine.fit(s.method, data, s.train_cfg, spec.seed, checkpoint=s.checkpoint,
                             resume=s.resume, extra=extra,
                             on_epoch=tracker.log_epoch, progress=params.runtime.progress,
                             label=spec.run_name, accel=accel)
        metrics = final_metrics(history, spec)
        if rank == 0:
            metrics.update(write_report(s, data, tracker, metrics["epochs"]))
            write_outputs(s, data, history, metrics, tracker, accel)
    if rank == 0 and spec.stage != "teacher":
        name, note = parent_name_and_note(s)
        update_parent(tracker.client, tracker.experiment_id, tracker.run_id, spec.group_name,
                      name, metrics, s.config, note)
    distributed.cleanup()
    return metrics


def open_tracker(s: Setup, device: Any, rank: int, world: int) -> Tracker | NullTracker:
    """The run's MLflow run (rank 0 only); a resumed run logs the epochs it missed."""
    if rank != 0:
        return NullTracker()
    spec = s.spec
    tags = {"stage": spec.stage, "method": spec.method, "variant": spec.variant,
            "seed": str(spec.seed), "instance": spec.run_name,
            "params_hash": s.checkpoint.fingerprint, "profile": s.params.profile,
            "dataset": s.prepared.meta["dataset"], "device": device.type,
            "world_size": str(world), **child_tags(spec.group_name, s.config)}
    tracker = Tracker(experiment_name(s.params.profile, s.prepared.meta["dataset"]), spec.run_name,
                      tags, {**flatten(s.logged), "seed": spec.seed},
                      run_id=(s.resume or {}).get("extra", {}).get("run_id"),
                      description=describe(spec))
    try:
        _describe_run(tracker, s, world)
    except BaseException as exc:  # e.g. Ctrl-C before training: the run ends KILLED, not RUNNING
        tracker.__exit__(type(exc), exc, exc.__traceback__)
        raise
    return tracker


def _describe_run(tracker: Tracker, s: Setup, world: int) -> None:
    """What a new (or resumed) run logs before its first epoch."""
    spec = s.spec
    if s.teacher_run:  # the exact teacher this run distils: its run and registered version
        tracker.set_tags({"teacher_run_id": s.teacher_run, "teacher_model_version":
                          tracker.model_version(teacher_model_name(s.params.profile), s.teacher_run)})
    if spec.stage not in SEARCH_STAGES:  # the reported runs' models, on the Models page
        tracker.open_models(list(s.method.evaluated()), spec.run_name,
                            (s.resume or {}).get("extra", {}).get("model_ids"))
    if s.resume is not None:
        tracker.sync(s.resume["history"])
    else:
        tracker.log_dataset(s.prepared.meta, str(PREPARED_DIR))
    if world > 1:
        print(f"[ilkd] {spec.run_name}: world size {world}, global batch "
              f"{s.train_cfg.batch_size} split across ranks", flush=True)


def describe(spec: RunSpec) -> str:
    """One line for the run page: what the run is and which table row it feeds."""
    info = REGISTRY[spec.method]
    what = info.label if spec.variant == "full" else \
        f"{info.short or info.label}, {VARIANT_NOTES[spec.variant]}"
    feeds = {"teacher": "the teacher that KD distils (T1, T3)",
             "baselines": "default recipe (T2/T3)",
             "kd_ablation": "T1" + (" and T3's KD row" if spec.variant == "full" else ""),
             "introspective": "T4" + (" and IL's rows in T2/T3" if spec.variant == "full" else ""),
             "tuned": "tuned recipe (T2/T3 '(tuned)' row)",
             "tune": f"tuning {spec.group.split('/')[-1]} (validation split only)",
             "surface": f"response surface, {spec.group} (validation split only)"}[spec.stage]
    return f"{what}: {feeds}, seed {spec.seed}"


def final_metrics(history: list[dict[str, float]], spec: RunSpec) -> dict[str, Any]:
    last = history[-1]
    metrics: dict[str, Any] = {k: v for k, v in last.items()
                               if k not in NOT_FINAL_METRICS and not k.startswith("train_")}
    metrics.update(train_acc=last["train_acc"], train_loss=last["train_loss"],
                   epochs=int(last["epoch"]), seed=spec.seed)
    return metrics


def write_report(s: Setup, data: engine.DeviceData, tracker: Tracker,
                 epochs: int) -> dict[str, float]:
    """The method's own after-training report (IL: similarity matrix, explanations)."""
    report = s.method.report(data)
    folder, classes = s.path("results"), data.meta["classes"]
    written = []
    if report.similarity is not None:
        write_matrix(folder / "similarity.csv", report.similarity, classes)
        save_figure(similarity_heatmaps(report.similarity, None, classes, None),
                    folder / "similarity.png")
        written += ["similarity.csv", "similarity.png"]
    if report.explanations is not None:
        e = report.explanations
        save_figure(explanation_grid(e.images, e.labels, e.maps, classes, e.explainer),
                    folder / "explanations.png")
        written.append("explanations.png")
    for name in written:
        tracker.log_artifact(folder / name)
    if report.metrics:
        tracker.log_metrics(report.metrics, step=epochs)
    return report.metrics


def write_outputs(s: Setup, data: engine.DeviceData, history: list[dict[str, float]],
                  metrics: dict[str, Any], tracker: Tracker, accel: engine.Accel) -> None:
    """DVC outputs (each atomic), then the same files as MLflow artifacts and logged models."""
    spec, method, results = s.spec, s.method, s.path("results")
    model_file = s.path("models") / "model.pt"
    atomic_torch_save(model_file, {
        "state_dict": {k: m.state_dict() for k, m in method.models.items()},
        "meta": {"arch": s.model_cfg.arch, "width": s.model_cfg.width,
                 "data_sha256": s.prepared.meta["sha256"], "method": spec.method,
                 "variant": spec.variant, "seed": spec.seed,
                 # per_seed: the subset it saw (a KD student checks its teacher saw its own)
                 **({"subset_seed": s.prepared.meta["subset_seed"]}
                    if "subset_seed" in s.prepared.meta else {})},
    })  # no run id, no wall time: every DVC output but mlflow_run.json is a pure function of
    # code, data, params and seed, so `git diff dvc.lock` shows only results that changed
    atomic_write_csv(results / "history.csv",
                     [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in history])
    model = next(iter(method.evaluated().values()))  # DML: peer0
    logits = engine.predict(model, data, "test", 1024, accel)
    atomic_write_json(results / "reliability.json",
                      reliability_bins(logits.softmax(1), data.y["test"]))
    save_figure(training_curves(history, spec.run_name), results / "curves.png")
    atomic_write_json(results / RUN_FILE, {**tracker.describe(), "run_name": spec.run_name,
                                           "config": s.config})  # what its seeds share (CONFIG_TAG)
    atomic_write_json(results / "metrics.json", metrics)
    for name in ("metrics.json", "history.csv", "curves.png", "reliability.json"):
        tracker.log_artifact(results / name)
    tracker.log_artifact(model_file, "model")
    example = data.batch("test", slice(0, 2))[0].float().cpu().numpy()
    registered = teacher_model_name(s.params.profile) if spec.stage == "teacher" else None
    for name in tracker.model_ids:
        tracker.log_model(method.evaluated()[name].cpu().eval(), name, example, registered)


__all__ = ["RunSpec", "run"]
