"""The teachers: one stage instance per seed a student distils from.

``teacher@<s>`` (each reported seed) and ``tuning_teacher@<s>`` (each tuning seed) publish
``models/teacher/[tuning/]seed-<s>/model.pt``, the teacher a student of seed ``s`` distils,
with its results in ``results/teacher/[tuning/]seed-<s>/``. A KD instance depends on its own
seed's folder only, so J workers train J teachers at once and adding seeds retrains no
existing student.

- ``data.split_seed: per_seed``: every seed trains on its own subset, and a KD student may
  only learn from a teacher that saw the same images, so each instance trains its own
  teacher (seeded with ``s``, on ``s``'s subset).
- a fixed split (an int): one teacher serves every seed, as in the paper. ``shared_teacher``
  trains it (seed ``teacher.seed``) into ``models/teacher/shared/``; each instance copies it
  (DVC's cache stores the identical files once).

Whichever mode is off leaves its stage's folders empty but for a note, so the DAG's shape
does not depend on params. A tuning seed's teacher is trained only when a method that
distils it is tuned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.core.config import Params
from pipeline.core.errors import CheckpointError
from pipeline.core.io import atomic_write_bytes
from pipeline.core.runs import RunSpec
from pipeline.core.store import RUN_FILE, recorded_run_id
from pipeline.train.offmode import NOTE

SHARED, TUNING = "shared", "tuning"  # groups (folders) below models/teacher and results/teacher
FILES = ("metrics.json", "history.csv", "curves.png", "reliability.json", RUN_FILE)


def tuning_needs_teacher(params: Params) -> bool:
    return bool(params.tune.enabled and params.tune.teacher_methods)


def destination(params: Params, seed: int, tuning: bool | None = None) -> RunSpec:
    """Where the teacher of a student of ``seed`` is published (``tuning``: a tuning seed's;
    by default, when ``seed`` is one of ``tune.seeds`` and not a reported seed)."""
    if tuning is None:
        tuning = seed in params.tune.seeds and seed not in params.seeds
    return RunSpec("teacher", "ce", "full", seed, group=TUNING if tuning else "")


def shared_spec(params: Params) -> RunSpec:
    """The fixed split's one teacher."""
    return RunSpec("teacher", "ce", "full", params.teacher.seed, group=SHARED)


def teacher_spec(params: Params, seed: int) -> RunSpec:
    """The training run of the teacher a student of ``seed`` distils."""
    return destination(params, seed) if params.data.per_seed else shared_spec(params)


def teacher_file(params: Params, seed: int) -> Path:
    """The teacher file a student of ``seed`` distils."""
    return destination(params, seed).folder("models") / "model.pt"


def publish_copy(params: Params, seed: int, tuning: bool, root: Path) -> dict[str, Any]:
    """A fixed split: copy the shared teacher's model and results to ``seed``'s folders
    (each file atomically: a kill mid-copy leaves no partial model)."""
    source, dest = shared_spec(params), destination(params, seed, tuning)
    model = root / source.folder("models") / "model.pt"
    if not model.is_file():
        raise CheckpointError(f"{model}: the shared teacher is missing "
                              "(run `dvc repro shared_teacher` first)")
    for kind, names in (("models", ("model.pt",)), ("results", FILES)):
        target = root / dest.folder(kind)
        if (target / NOTE).exists():
            (target / NOTE).unlink()
        for name in names:
            atomic_write_bytes(target / name, (root / source.folder(kind) / name).read_bytes())
    return json.loads((root / source.folder("results") / "metrics.json").read_text())


def teacher_summary(params: Params, results: Path) -> dict[str, Any] | None:
    """The reported seeds' teachers, each distinct run once: their mean test accuracy and
    how many there are (one with a fixed split, one per seed with ``per_seed``)."""
    runs: dict[str, dict[str, Any]] = {}
    for seed in params.seeds:
        folder = results / destination(params, seed).relative
        if (folder / "metrics.json").is_file():
            run = recorded_run_id(folder) or str(seed)  # copies of one teacher share a run
            runs[run] = json.loads((folder / "metrics.json").read_text())
    if not runs:
        return None
    accs = [m["test_acc"] for m in runs.values()]
    return {"test_acc": sum(accs) / len(accs), "teachers": len(accs)}
