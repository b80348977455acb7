"""DVC stage ``aggregate``: tables T1-T4 and figures from every run's metrics files.

It also compares IL's class similarity with the teacher's (both on the test
split): that is the only place where IL results meet the teacher, so IL's
training stages never depend on it.
"""

from __future__ import annotations

import numpy as np

from pipeline.core.cli import main
from pipeline.core.config import load_params
from pipeline.core.io import atomic_write_json
from pipeline.core.paths import FIGURES, PREPARED_DIR, RESULTS, TABLES
from pipeline.core.prepared import load_prepared
from pipeline.core.store import RUN_FILE, experiment_name
from pipeline.core.tracking import Tracker
from pipeline.results.write import write_all


def teacher_similarity(params) -> np.ndarray | None:
    """The teacher's class similarity on the test split; with per-seed teachers the mean
    over the reported seeds' teachers (each distinct file once)."""
    import hashlib

    from pipeline.core.models import load_teacher
    from pipeline.results.similarity import teacher_similarity_on
    from pipeline.train.teachers import teacher_file

    files = {hashlib.sha256(teacher_file(params, s).read_bytes()).hexdigest(): s
             for s in params.seeds if teacher_file(params, s).is_file()}
    if not files:
        return None
    pool = load_prepared(PREPARED_DIR)
    matrices = []
    for seed in files.values():
        prepared = pool.for_seed(seed)
        teacher = load_teacher(teacher_file(params, seed), prepared.meta["sha256"],
                               prepared.num_classes, prepared.in_channels,
                               params.teacher.model, prepared.meta.get("subset_seed"))
        matrices.append(teacher_similarity_on(teacher, prepared))
    return np.mean(matrices, axis=0)


def entry() -> None:
    params = load_params()
    tracker = Tracker(experiment_name(params.profile, params.data.name), "aggregate",
                      {"stage": "aggregate", "profile": params.profile},
                      {"seeds": " ".join(map(str, params.seeds))})
    written = write_all(params, RESULTS, TABLES, FIGURES, teacher_similarity(params))
    for path in written:
        tracker.log_artifact(path, path.parent.name)
    atomic_write_json(TABLES / RUN_FILE, tracker.describe())
    tracker.finish()
    print((TABLES / "all_tables.md").read_text())


if __name__ == "__main__":
    main(entry)
