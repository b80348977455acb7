"""The ``teacher`` stage: which teachers to train, and the teacher each student distils.

With a fixed data split (``data.split_seed: <int>``) one teacher is trained (seed
``teacher.seed``), as in the paper. With ``data.split_seed: per_seed`` every seed
trains on its own subset, and a KD student may only learn from a teacher that saw
the same images: one teacher is trained per seed, on that seed's subset (and
seeded with it), below ``models/teacher/per_seed/seed-<s>/``.

Either way the stage publishes ``models/teacher/seed-<s>/model.pt``, the teacher a
student of seed ``s`` distils (in the fixed split a copy of the one teacher; DVC's
cache stores identical files once). A KD instance depends on its own seed's file
only, so adding seeds retrains the teachers of the new seeds and no existing
student.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.config import Params
from pipeline.core.io import atomic_write_bytes, atomic_write_csv, atomic_write_json
from pipeline.core.paths import TEACHER_DIR
from pipeline.core.runs import RunSpec
from pipeline.core.tracking import RUN_FILE, recorded_run_id

PER_SEED = "per_seed"  # the group (folder) of per-seed teachers
PER_SEED_RESULTS = RunSpec("teacher", "ce", "full", 0, group=PER_SEED).folder().parent


def distilling_seeds(params: Params) -> list[int]:
    """Every seed a run that distils the teacher uses: the reported seeds, and the tuning
    seeds when a method that distils it is tuned."""
    tuning = params.tune.enabled and params.tune.teacher_methods
    return sorted(set(params.seeds) | (set(params.tune.seeds) if tuning else set()))


def teacher_file(seed: int) -> Path:
    """The teacher a student of ``seed`` distils."""
    return TEACHER_DIR / f"seed-{seed}" / "model.pt"


def teacher_spec(params: Params, seed: int) -> RunSpec:
    """The training run of the teacher a student of ``seed`` distils."""
    if params.data.per_seed:
        return RunSpec("teacher", "ce", "full", seed, group=PER_SEED)
    return RunSpec("teacher", "ce", "full", params.teacher.seed)


def teacher_specs(params: Params) -> list[RunSpec]:
    """The teacher runs the stage trains, in order (each resumes from its checkpoint)."""
    if params.data.per_seed:
        return [teacher_spec(params, s) for s in distilling_seeds(params)]
    return [teacher_spec(params, params.teacher.seed)]


def publish(params: Params, spec: RunSpec, root: Path) -> None:
    """Place the teacher ``spec`` trained at :func:`teacher_file` of every distilling seed
    it serves (an atomic copy: the runner calls this after saving the model)."""
    for seed in distilling_seeds(params):
        if teacher_spec(params, seed) == spec:
            atomic_write_bytes(root / teacher_file(seed),
                               (root / spec.folder("models") / "model.pt").read_bytes())


def summarise(params: Params, root: Path, metrics: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """``results/teacher``'s files with per-seed teachers: the mean of each numeric metric
    over the teachers (and each teacher's test accuracy), and the epoch-wise mean history."""
    import csv

    from pipeline.core.metrics import pool_reliability
    from pipeline.figures import save_figure, training_curves

    folder = root / RunSpec("teacher", "ce").folder()
    seeds = sorted(metrics)
    keys = [k for k, v in metrics[seeds[0]].items() if k != "seed"
            and isinstance(v, int | float) and all(k in metrics[s] for s in seeds)]
    mean = {k: sum(metrics[s][k] for s in seeds) / len(seeds) for k in keys}
    mean.update(teachers=len(seeds), test_acc_by_seed={str(s): metrics[s]["test_acc"]
                                                         for s in seeds})
    histories, reliabilities, runs = [], [], {}
    for seed in seeds:
        sub = root / teacher_spec(params, seed).folder()
        with open(sub / "history.csv", newline="") as f:
            histories.append(list(csv.DictReader(f)))
        reliabilities.append(_read_json(sub / "reliability.json"))
        runs[str(seed)] = recorded_run_id(sub)
    history = _mean_history(histories)
    atomic_write_csv(folder / "history.csv", history)
    save_figure(training_curves(history, f"teacher (mean of {len(seeds)} per-seed teachers)"),
                folder / "curves.png")
    atomic_write_json(folder / "reliability.json", pool_reliability(reliabilities))
    atomic_write_json(folder / RUN_FILE, {"run_name": "teacher (per seed)", "run_ids": runs})
    atomic_write_json(folder / "metrics.json", mean)
    return mean


def _read_json(path: Path) -> dict[str, Any]:
    import json

    return json.loads(path.read_text())


def _mean_history(histories: list[list[dict[str, str]]]) -> list[dict[str, float]]:
    """Epoch by epoch, the mean of every column all teachers logged that epoch."""
    out = []
    for rows in zip(*histories, strict=True):
        keys = [k for k in rows[0] if rows[0][k] != "" and all(r.get(k, "") != "" for r in rows)]
        out.append({k: sum(float(r[k]) for r in rows) / len(rows) for k in keys})
        out[-1]["epoch"] = int(out[-1]["epoch"])
    return out
