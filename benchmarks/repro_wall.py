"""Wall time of the whole DAG, warm against cold stage starts, each on a fresh clone.

    python benchmarks/repro_wall.py                      # J=1 and J=2, warm and cold (~45 min)
    python benchmarks/repro_wall.py -j 2 --targets baselines@ce-0   # a quick check

Each variant clones the current commit into a temporary folder (empty DVC cache, no MLflow
store), reuses this interpreter's environment (install excluded), runs
``python -m pipeline.tools.parallel -j J [--cold] [targets]`` and times it; then checks that
``dvc status`` is clean and that every variant wrote the same ``metrics.json`` files (their
md5s in ``dvc.lock``). Run it with nothing else on the machine: one variant at a time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def metric_hashes(root: Path) -> dict[str, str]:
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {o["path"]: o["md5"] for stage in stages.values() for o in stage.get("outs", [])
            if o["path"].endswith("metrics.json") and (root / o["path"]).exists()}  # run here


def one(tmp: Path, jobs: int, cold: bool, targets: list[str]) -> tuple[float, dict[str, str]]:
    root = tmp / f"j{jobs}-{'cold' if cold else 'warm'}"
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "pipeline.tools.parallel", "-j", str(jobs),
           *(["--cold"] if cold else []), *targets]
    tic = time.perf_counter()
    subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    took = time.perf_counter() - tic
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "-q", *targets], cwd=root,
                            env=env)
    if status.returncode:
        print(f"warning: `dvc status` is not clean in {root}")
    return took, metric_hashes(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-j", "--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--targets", nargs="*", default=[])
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="ilkd-wall-") as tmp:
        for jobs in args.jobs:
            for cold in (False, True):
                results[(jobs, cold)] = one(Path(tmp), jobs, cold, args.targets)
                took = results[(jobs, cold)][0]
                print(f"J={jobs} {'cold' if cold else 'warm'}: {int(took // 60)}m{int(took % 60):02d}s "
                      f"({took:.1f} s)", flush=True)
    hashes = [h for _, h in results.values()]
    same = all(h == hashes[0] for h in hashes)
    print(f"metrics.json files: {len(hashes[0])}, identical in every variant: {same}")


if __name__ == "__main__":
    main()
