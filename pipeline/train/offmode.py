"""A training instance whose mode is off: DVC still expects its declared outputs, so each
holds only why (``{"trained": false, "why": ...}``) and nothing reads it as a result.

Two kinds of instance use it. A teacher instance whose mode is off (``shared_teacher`` when
every seed trains its own, ``tuning_teacher@<s>`` when no tuned method distils it) declares
folders, which get one note file each. ``tuned@<method>-<seed>`` with ``tune.enabled:
false`` declares the run's files: the tables then have no tuned rows, and training the
default recipe once more would only repeat ``baselines@<method>-<seed>`` (for CE, bit for
bit), so each file says why instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pipeline.core.io import atomic_write_json, atomic_write_text
from pipeline.core.runs import RunSpec
from pipeline.core.store import RUN_FILE

NOTE = "NOT_TRAINED.json"  # what a declared output folder holds instead of a run
RUN_FILES = ("metrics.json", "reliability.json", RUN_FILE)  # JSON files of a declared run


def write_note(spec: RunSpec, root: Path, why: str, run_files: bool = False) -> dict[str, Any]:
    """Replace ``spec``'s output folders by notes saying ``why``; with ``run_files``, also
    write each file a training stage declares (its JSON files the note, ``history.csv`` the
    header alone, ``curves.png`` the note drawn), so DVC finds every output."""
    note = {"trained": False, "why": why}
    for kind in ("models", "results"):
        folder = root / spec.folder(kind)
        if folder.exists():
            shutil.rmtree(folder)
        if kind == "models" or not run_files:
            atomic_write_json(folder / NOTE, note)
    if run_files:
        from pipeline.figures import note_figure, save_figure  # matplotlib only here

        results = root / spec.folder("results")
        for name in RUN_FILES:
            atomic_write_json(results / name, note)
        atomic_write_text(results / "history.csv", "epoch,test_acc\n")
        save_figure(note_figure(f"{spec.run_name}: not trained", why), results / "curves.png")
    return {}
