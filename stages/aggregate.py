"""DVC stage ``aggregate``: tables T1-T4 and figures from every run's metrics files."""

from __future__ import annotations

from pathlib import Path

from pipeline.aggregate import write_all
from pipeline.cli import main
from pipeline.config import load_params
from pipeline.io import atomic_write_json
from pipeline.tracking import RUN_FILE, Tracker

RESULTS, TABLES, FIGURES = Path("results"), Path("results/tables"), Path("results/figures")


def entry() -> None:
    params = load_params()
    tracker = Tracker(f"ilkd-{params.profile}-{params.data.name}", "aggregate",
                      {"stage": "aggregate", "profile": params.profile},
                      {"seeds": " ".join(map(str, params.seeds))})
    written = write_all(params, RESULTS, TABLES, FIGURES)
    for path in written:
        tracker.log_artifact(path, path.parent.name)
    atomic_write_json(TABLES / RUN_FILE, tracker.describe())
    tracker.finish()
    print((TABLES / "all_tables.md").read_text())


if __name__ == "__main__":
    main(entry)
