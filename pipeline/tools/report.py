"""Commit a profile's results: ``results/tables`` and ``results/figures`` -> ``reports/<profile>/``.

    python -m pipeline.tools.report           # after `dvc repro`; `make readme` runs it

``results/`` holds DVC outputs (their hashes are in ``dvc.lock``, their bytes in DVC's
cache); ``reports/<profile>/`` is the small, reviewed copy that git keeps for every profile
that was run, with the params, the lock files (``dvc.lock``, ``dag/*/dvc.lock``: the md5 of
every output) and the commit that produced it. ``make readme`` splices docs/results.md and
the README from it and ``make verify`` compares a fresh regeneration against it.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from pathlib import Path

import yaml

from pipeline.core.paths import FIGURES, PARAMS, PREPARED_DIR, REPORTS, TABLES
from pipeline.core.prepared import META_FILE
from pipeline.results.write import TEACHER_FILE

CODE = ("pipeline", "stages", "dvc.yaml", "dag/*/dvc.yaml")  # what decides the results


def profile_of(params: Path = PARAMS) -> str:
    return str(yaml.safe_load(params.read_text())["profile"])


def lock_files(root: Path = Path()) -> list[Path]:
    """The DAG's lock files, relative to ``root``: the spine's ``dvc.lock`` and each part's
    ``dag/<part>/dvc.lock``."""
    found = [root / "dvc.lock", *sorted((root / "dag").glob("*/dvc.lock"))]
    return [p.relative_to(root) for p in found if p.is_file()]


def lock_stages(root: Path = Path()) -> dict:
    """Every stage entry of those lock files, by stage name."""
    stages: dict = {}
    for lock in lock_files(root):
        stages.update(yaml.safe_load((root / lock).read_text()).get("stages") or {})
    return stages


def metric_md5s(root: Path = Path()) -> dict[str, str]:
    """The md5 every lock file records for each ``metrics.json``, by path: two runs of the
    DAG agree bit for bit when these do."""
    return {o["path"]: o["md5"] for stage in lock_stages(root).values()
            for o in stage.get("outs", []) if o["path"].endswith("metrics.json")}


PACKAGES = ("torch", "torchvision", "numpy", "scipy", "statsmodels", "pandas", "dvc", "mlflow")


def installed_versions() -> dict[str, str]:
    """The versions of the packages that decide the numbers (``requirements.lock`` pins
    them all; these are the ones a reader checks first)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def cpu() -> dict[str, str]:
    """The CPU and the kernel set torch dispatches to on it (``DEFAULT``, ``AVX2``,
    ``AVX512``...). Two machines with different kernel sets round sums differently, so the
    same seed lands elsewhere within seed noise: ``make verify`` says so up front."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpu": model, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def save(params: Path = PARAMS, reports: Path = REPORTS) -> Path:
    if not (TABLES / "all_tables.md").is_file():
        raise SystemExit(f"error: {TABLES / 'all_tables.md'} not found; run `dvc repro` first")
    target = reports / profile_of(params)
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "tables").mkdir(parents=True)
    for path in sorted([*TABLES.glob("*.csv"), *TABLES.glob(TEACHER_FILE),
                        *TABLES.glob("surface.md")]):
        shutil.copy2(path, staging / "tables" / path.name)  # what `decide --write` re-renders
    shutil.copy2(TABLES / "all_tables.md", staging / "all_tables.md")
    if FIGURES.is_dir():
        shutil.copytree(FIGURES, staging / "figures")
    shutil.copy2(params, staging / "params.yaml")
    for lock in lock_files():  # every output's md5: which runs these tables came from
        (staging / lock).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lock, staging / lock)
    meta = json.loads((PREPARED_DIR / META_FILE).read_text())
    provenance = {"commit": _git("rev-parse", "HEAD"),
                  "code_changed_since_commit": bool(_git("status", "--porcelain", "--", *CODE)),
                  "dataset": meta["dataset"], "dataset_sha256": meta["sha256"],
                  "sizes": meta["sizes"], "machine": platform.machine(),
                  **cpu(), "python": platform.python_version(),
                  "versions": installed_versions()}
    (staging / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    print(f"[ilkd] {target}: tables, figures, params and provenance of this run")
    return target


if __name__ == "__main__":
    save()
