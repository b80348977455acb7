"""The fixed cost of a stage instance, and of a no-op `dvc repro` (run in an up-to-date repo).

    python benchmarks/startup.py            # after `make repro`, with nothing else running

* import time of what every training stage imports (``python -X importtime``);
* a training stage whose checkpoint is already final: the whole process minus training
  (load data, open the MLflow run, write and log every output, logged model, parent run),
  started cold (a fresh ``python``) and warm (handed to ``pipeline/orchestrate/warm.py``'s server,
  as ``make repro`` does);
* `dvc repro` when everything is up to date.

Each is the median of ``--repeat`` runs, with the spread (min-max).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], env: dict[str, str] | None = None) -> float:
    tic = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - tic


def import_seconds(module: str) -> float:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True).stderr
    last = [line for line in out.splitlines() if re.search(rf"\| {re.escape(module)}$", line)]
    return int(last[-1].split("|")[1]) / 1e6


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stage", default="baselines --method ce --seed 0")
    args = parser.parse_args()
    print(f"| what | seconds (median of {args.repeat}) |\n|---|---|")
    for module in ("torch", "mlflow.tracking", "matplotlib.pyplot", "pipeline.train.runner"):
        values = [import_seconds(module) for _ in range(args.repeat)]
        print(f"| import {module} | {summary(values)} |")
    values = [timed([sys.executable, "-m", "dvc", "repro"]) for _ in range(args.repeat)]
    print(f"| `dvc repro`, everything up to date | {summary(values)} |")
    stage = [sys.executable, "-m", "stages.train", *args.stage.split()]
    values = [timed(stage) for _ in range(args.repeat)]
    print(f"| `{' '.join(stage[1:])}`, nothing left to train, cold | {summary(values)} |")
    from pipeline.orchestrate.warm import warm_server

    with warm_server() as env:
        timed(stage, env)  # the first call also waits for the server's imports
        values = [timed(stage, env) for _ in range(args.repeat)]
    print(f"| the same, warm (`make repro`'s stage start) | {summary(values)} |")
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "-q"])
    if status.returncode:  # the rerun stage wrote other bytes: `dvc repro` would retrain it
        print("warning: `dvc status` is not clean after the stage reruns")


if __name__ == "__main__":
    main()
