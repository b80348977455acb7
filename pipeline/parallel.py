"""Run the DVC pipeline with N workers in one workspace (``make repro J=N``).

    python -m pipeline.parallel -j 2                  # CPU: torch threads split among workers
    python -m pipeline.parallel -j 8 --gpus 0,1,2,3   # 2 workers per GPU (CUDA_VISIBLE_DEVICES)
    python -m pipeline.parallel -j 2 aggregate        # only what `aggregate` needs
    python -m pipeline.parallel --dry                 # print the plan

DVC runs stages one at a time. This walks DVC's own graph instead: it asks DVC which
stages changed, adds everything downstream of them, and starts ``dvc --wait-for-lock
repro -s <stage>`` for every stage whose upstream stages are done, at most N at once.
Each such process records its own stage in ``dvc.lock`` and the run-cache (the lock makes
their bookkeeping take turns; training runs concurrently). A final plain ``dvc repro``
must then find nothing left to do. A failed stage stops new launches; running ones finish,
everything finished stays recorded, and rerunning resumes. Logs: ``.dvc/tmp/parallel/``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .cli import main as cli_main
from .errors import ConfigError

LOG_DIR = Path(".dvc/tmp/parallel")


@dataclass
class Plan:
    """Stages to run and, for each, the stages in the plan it waits for."""

    waits_for: dict[str, set[str]]
    order: list[str] = field(default_factory=list)  # a topological order, for display

    def ready(self, done: set[str], started: set[str]) -> list[str]:
        return [s for s in self.order if s not in started and self.waits_for[s] <= done]


def make_plan(targets: Iterable[str] = (), force: bool = False) -> Plan:
    """Changed stages (DVC's own check) and everything downstream of them."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo() as repo:
        graph = repo.index.graph  # edge: stage -> a stage it depends on
        by_name = {s.addressing: s for s in graph.nodes}
        unknown = [t for t in targets if t not in by_name]
        if unknown:
            raise ConfigError(f"dvc.yaml: no stage named {', '.join(unknown)} "
                              f"(known: e.g. {', '.join(sorted(by_name)[:5])}, ...)")
        scope = set(by_name.values())
        if targets:
            scope = set().union(*[{by_name[t], *nx.descendants(graph, by_name[t])}
                                  for t in targets])
        with repo.lock:
            changed = {s for s in scope if force or s.changed()}
        reverse = graph.reverse(copy=False)  # edge: stage -> a stage that depends on it
        run = set(changed)
        for stage in changed:
            run |= nx.descendants(reverse, stage) & scope
        order = [s for s in reversed(list(nx.topological_sort(graph))) if s in run]
        waits = {s.addressing: {d.addressing for d in nx.descendants(graph, s) if d in run}
                 for s in order}
    return Plan(waits, [s.addressing for s in order])


def worker_env(slot: int, workers: int, gpus: list[str]) -> dict[str, str]:
    """One GPU (or a share of one) per worker; on CPU the cores are split among workers."""
    env = dict(os.environ)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    else:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    return env


def prepare_tracking_store() -> None:
    """Create the local MLflow store once: parallel first-time migrations would collide."""
    from .tracking import repo_root, resolve_tracking_uri

    uri = resolve_tracking_uri()
    if uri.startswith("sqlite:") and not (repo_root() / "mlflow.db").exists():
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments()


@dataclass
class Job:
    stage: str
    slot: int
    proc: subprocess.Popen
    log: Path
    started: float


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def execute(plan: Plan, workers: int, gpus: list[str], dvc: list[str]) -> list[str]:
    """Run the plan; return the stages that failed (empty on success)."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    total, done, failed = len(plan.order), set(), []
    started: set[str] = set()
    running: dict[int, Job] = {}
    stop = False

    def on_signal(signum, frame):  # children got the same signal from the terminal
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        while True:
            if not (stop or failed):
                for stage in plan.ready(done, started):
                    free = [s for s in range(workers) if s not in running]
                    if not free:
                        break
                    slot = free[0]
                    log = LOG_DIR / f"{stage.replace('@', '_').replace('/', '_')}.log"
                    with log.open("w") as handle:
                        proc = subprocess.Popen([*dvc, "--wait-for-lock", "repro", "-s", stage],
                                                stdout=handle, stderr=subprocess.STDOUT,
                                                env=worker_env(slot, workers, gpus))
                    running[slot] = Job(stage, slot, proc, log, time.monotonic())
                    started.add(stage)
                    print(f"[parallel] start {stage} (worker {slot}) — done {len(done)}/{total}, "
                          f"running {len(running)}, left {total - len(started)}", flush=True)
            if not running:
                break
            time.sleep(0.2)
            for slot, job in list(running.items()):
                code = job.proc.poll()
                if code is None:
                    continue
                del running[slot]
                took = time.monotonic() - job.started
                if code == 0:
                    done.add(job.stage)
                    print(f"[parallel] done  {job.stage} in {took:.1f}s — {len(done)}/{total}",
                          flush=True)
                else:
                    failed.append(job.stage)
                    print(f"[parallel] FAILED {job.stage} (exit {code}) after {took:.1f}s; "
                          f"log: {job.log}; no new stages start", flush=True)
    except KeyboardInterrupt:
        for job in running.values():
            job.proc.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    for stage in failed:
        log = LOG_DIR / f"{stage.replace('@', '_').replace('/', '_')}.log"
        print(f"\n[parallel] {stage} failed; last lines of {log}:\n{_tail(log)}", file=sys.stderr)
    return failed


def run(targets: list[str], workers: int, gpus: list[str], force: bool = False,
        dry: bool = False) -> int:
    dvc = [sys.executable, "-m", "dvc"]
    plan = make_plan(targets, force)
    if dry:
        for stage in plan.order:
            waits = ", ".join(sorted(plan.waits_for[stage])) or "-"
            print(f"{stage}  <- {waits}")
        return 0
    print(f"[parallel] {len(plan.order)} stages to run with {workers} workers"
          + (f" on GPUs {','.join(gpus)}" if gpus else ""), flush=True)
    prepare_tracking_store()
    tic = time.monotonic()
    failed = execute(plan, workers, gpus, dvc)
    if failed:
        print(f"[parallel] {len(failed)} failed: {', '.join(failed)}; finished stages are "
              "recorded, rerun to resume", file=sys.stderr)
        return 1
    final = subprocess.run([*dvc, "repro", *targets], capture_output=True, text=True)
    reran = [line for line in final.stdout.splitlines() if line.startswith("Running stage")]
    if final.returncode != 0 or reran:
        print(final.stdout[-3000:] + final.stderr[-3000:], file=sys.stderr)
        print(f"[parallel] the final `dvc repro` had to run {len(reran)} stage(s): "
              "the plan missed them", file=sys.stderr)
        return 1
    print(f"[parallel] all {len(plan.order)} stages done in {time.monotonic() - tic:.1f}s; "
          "`dvc repro` finds nothing left to run", flush=True)
    return 0


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="stages to reproduce (default: all)")
    parser.add_argument("-j", "--jobs", type=int, default=None,
                        help="workers (default: the GPU slots, else 1)")
    parser.add_argument("--gpus", default="", help="comma-separated GPU ids, e.g. 0,1")
    parser.add_argument("--per-gpu", type=int, default=1,
                        help="workers sharing one GPU (small models fit several)")
    parser.add_argument("-f", "--force", action="store_true", help="rerun even unchanged stages")
    parser.add_argument("--dry", action="store_true", help="print the plan and exit")
    args = parser.parse_args(argv)
    gpus = [g for g in args.gpus.split(",") if g] * args.per_gpu
    workers = args.jobs or max(1, len(gpus))
    if workers < 1:
        raise ConfigError("-j: need at least one worker")
    sys.exit(run(args.targets, workers, gpus, args.force, args.dry))


if __name__ == "__main__":
    cli_main(entry)
