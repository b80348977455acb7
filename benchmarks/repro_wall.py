"""Wall time of the whole DAG, warm against cold stage starts, each on a fresh clone.

    python benchmarks/repro_wall.py                      # J=1 and J=2, warm and cold (~45 min)
    python benchmarks/repro_wall.py -j 2 --targets baselines@ce-0   # a quick check
    python benchmarks/repro_wall.py --modes warm --revs HEAD~1 HEAD  # two commits, interleaved
    python benchmarks/repro_wall.py --modes warm -j 2 --revs A B --repeat 2   # two rounds
    python benchmarks/repro_wall.py --modes warm -j 1 --breakdown   # where the time went
    python benchmarks/repro_wall.py --modes warm -j 2 --batches 4 8  # the runner's batch cap

Each variant clones a commit (default: the current one) into a temporary folder (empty DVC
cache, no MLflow store), reuses this interpreter's environment (install excluded), runs
``python -m pipeline.tools.parallel -j J [--cold] [targets]`` and times it (wall, and the
CPU time of every process it waited for, which other load on a shared machine disturbs
less); then checks that DVC finds nothing left to run and that every variant wrote the same
``metrics.json`` files within each commit (their md5s in the lock files), and which of them two
commits share (a change meant to keep every result should keep them all). Run it with
nothing else on the machine: one variant at a time.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.tools.report import metric_md5s

REPO = Path(__file__).resolve().parents[1]


def one(tmp: Path, rev: str, jobs: int, cold: bool, targets: list[str],
        rep: int = 0, breakdown: bool = False,
        batch: int | None = None) -> tuple[float, float, dict[str, str]]:
    """(wall seconds, CPU seconds of the whole process tree, metrics.json md5s)."""
    root = tmp / f"{rev}-j{jobs}-{'cold' if cold else 'warm'}-b{batch}-{rep}"
    subprocess.run(["git", "clone", "-q", str(REPO), str(root)], check=True)
    subprocess.run(["git", "checkout", "-q", rev], cwd=root, check=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "pipeline.tools.parallel", "-j", str(jobs),
           *(["--cold"] if cold else []), *([f"--batch={batch}"] if batch else []), *targets]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    took = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # every process the run waited for
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    # DVC's own check, through the runner (it takes bare stage names): nothing left to run
    left = subprocess.run([*cmd[:3], "--dry", *targets], cwd=root, env=env,
                          capture_output=True, text=True)
    if left.returncode or left.stdout.strip():
        print(f"warning: `dvc status` is not clean in {root}")
    ran = {path: md5 for path, md5 in metric_md5s(root).items() if (root / path).exists()}
    if breakdown:  # benchmarks/wall_breakdown.py on this clone's MLflow store
        subprocess.run([sys.executable, str(REPO / "benchmarks/wall_breakdown.py"), "--root",
                        str(root)], check=True)
    return took, cpu, ran  # with --targets, the committed locks also list stages not run here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-j", "--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--targets", nargs="*", default=[])
    parser.add_argument("--revs", nargs="+", default=["HEAD"],
                        help="commits to compare (each variant runs on each, interleaved)")
    parser.add_argument("--modes", nargs="+", default=["warm", "cold"], choices=["warm", "cold"])
    parser.add_argument("--breakdown", action="store_true",
                        help="print where each run's time went (benchmarks/wall_breakdown.py)")
    parser.add_argument("--batches", type=int, nargs="+", default=[None],
                        help="the runner's --batch caps to compare (J>=2; default: its own)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds; each round runs every variant once, interleaved")
    args = parser.parse_args()
    revs = [subprocess.run(["git", "rev-parse", "--short", r], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.strip() for r in args.revs]
    results = {}
    with tempfile.TemporaryDirectory(prefix="ilkd-wall-") as tmp:
        for rep in range(args.repeat):
            for jobs in args.jobs:
                for mode in args.modes:
                    for batch in args.batches if jobs > 1 else [None]:
                        for rev in revs:
                            key = (rev, jobs, mode, batch, rep)
                            results[key] = one(Path(tmp), rev, jobs, mode == "cold",
                                               args.targets, rep, args.breakdown, batch)
                            took, cpu, _ = results[key]
                            cap = f" --batch {batch}" if batch else ""
                            print(f"{rev} J={jobs}{cap} {mode}: {int(took // 60)}m"
                                  f"{int(took % 60):02d}s ({took:.1f} s wall, {cpu:.1f} s CPU)",
                                  flush=True)
    for rev in revs:  # commits that change results differ from each other, not within
        hashes = [h for (r, *_), (*_, h) in results.items() if r == rev]
        same = all(h == hashes[0] for h in hashes)
        print(f"{rev}: metrics.json files: {len(hashes[0])}, identical in its "
              f"{len(hashes)} variants: {same}")
    first = {r: h for (r, *_), (*_, h) in reversed(results.items())}  # each commit's first
    for a, b in zip(revs, revs[1:], strict=False):  # a change that should keep every result: did it?
        both = sorted(set(first[a]) & set(first[b]))
        moved = [p for p in both if first[a][p] != first[b][p]]
        print(f"{a} -> {b}: {len(both) - len(moved)} of {len(both)} metrics.json files "
              f"identical" + (f"; differ: {', '.join(moved[:5])}" if moved else ""))


if __name__ == "__main__":
    main()
