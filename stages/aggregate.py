"""DVC stage ``aggregate``: tables T1-T4 and figures from every run's metrics files.

It also compares IL's class similarity with the teacher's (both on the test
split): that is the only place where IL results meet the teacher, so IL's
training stages never depend on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.cli import main
from pipeline.core.config import load_params
from pipeline.core.io import atomic_write_json
from pipeline.core.prepared import PREPARED_DIR, load_prepared
from pipeline.core.tracking import RUN_FILE, Tracker
from pipeline.results.write import write_all

RESULTS, TABLES, FIGURES = Path("results"), Path("results/tables"), Path("results/figures")


def teacher_similarity(params) -> np.ndarray | None:
    from pipeline.core.models import TEACHER_FILE, load_teacher
    from pipeline.results.similarity import teacher_similarity_on

    if not TEACHER_FILE.is_file():
        return None
    prepared = load_prepared(PREPARED_DIR)
    teacher = load_teacher(TEACHER_FILE, prepared.meta["sha256"], prepared.num_classes,
                           prepared.in_channels, params.teacher.model)
    return teacher_similarity_on(teacher, prepared)


def entry() -> None:
    params = load_params()
    tracker = Tracker(f"ilkd-{params.profile}-{params.data.name}", "aggregate",
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
