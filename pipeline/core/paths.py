"""Every path the stages and tools share, relative to the repository root (DVC runs each
stage there). ``dvc.yaml`` and ``dag/*/dvc.yaml`` spell the same paths for DVC;
``tests/integration/test_dvc_deps.py`` keeps the two in step where a stage reads or writes them."""

from __future__ import annotations

from pathlib import Path

PARAMS = Path("params.yaml")
TUNED_FILE = Path("params_tuned.yaml")  # tune_select's choice per tuned method
PRESETS = Path("presets")

PREPARED_DIR = Path("data/prepared")  # data.npz + meta.json (pipeline/core/prepared.py)
RESULTS, MODELS, CHECKPOINTS = Path("results"), Path("models"), Path("checkpoints")
TABLES, FIGURES = RESULTS / "tables", RESULTS / "figures"  # aggregate's outputs
TUNE_DIR = RESULTS / "tune"  # tune@<method>-<k> writes <method>/trial-<k>/ here:
TUNE_RECORD = "trial.json"  # the trial's configuration and validation scores, and its runs
TUNE_MODELS = MODELS / "tune"  # ... and the runs' models below <method>/trial-<k>/
SURFACE_DIR = RESULTS / "surface"  # surface@<x>-<y> writes <x>-<y>/, surface_reference reference/:
SURFACE_RECORD = "point.json"  # the point's settings and its runs' validation scores
TEACHER_DIR = MODELS / "teacher"  # seed-<s>/model.pt: the teacher a student of seed s distils

REPORTS = Path("reports")  # committed tables per profile (pipeline/tools/report.py)
RESULTS_DOC = Path("docs/results.md")
README = Path("README.md")
RUNNER_DIR = Path(".dvc/tmp/parallel")  # the parallel runner's logs, pid and stop file
