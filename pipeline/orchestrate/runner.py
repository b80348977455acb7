"""The loop that keeps N workers busy over the plan (``make repro J=N``), here or on a Dask
cluster; with one local worker, DVC's own ``dvc repro`` under the warm process. The
command and its options are ``pipeline/tools/parallel.py``'s."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.orchestrate.jobs import (
    DVC,
    LOG_DIR,
    DaskLauncher,
    Job,
    LocalLauncher,
    _tail,
    failed_in,
    guarded,
    log_file,
    split_log,
)
from pipeline.orchestrate.plan import TESTED_DVC, Plan, label, make_plan, untested_dvc
from pipeline.orchestrate.records import LockKeeper, RunnerLock, forget_recorded
from pipeline.orchestrate.signals import Interrupts
from pipeline.orchestrate.warm import WarmServer


def prepare_tracking_store() -> None:
    """Create the local MLflow store once: parallel first-time migrations would collide."""
    from pipeline.core.store import repo_root, resolve_tracking_uri

    uri = resolve_tracking_uri()
    if uri.startswith("sqlite:") and not (repo_root() / "mlflow.db").exists():
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments()


def execute(plan: Plan, workers: int, launcher: Any, stop: Interrupts | None = None,
            locks: LockKeeper | None = None) -> list[str]:
    """Run the plan; return the stages that failed or were stopped (empty on success).
    After a signal (``stop``) no stage starts; the running ones stop and are waited for."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    stop = stop or Interrupts()
    total, done, failed = len(plan.order), set(), []
    started: set[str] = set()
    running: dict[int, Job] = {}
    while True:
        free = [s for s in range(workers) if s not in running]
        ready = plan.ready(done, started) if not (stop.received or failed) else []
        while free and ready:
            slot, batch = free.pop(0), plan.batch(ready, workers, launcher.batch)
            running[slot] = launcher.start(batch, slot)
            stop.jobs = list(running.values())
            started.update(batch)
            ready = [s for s in ready if s not in started]
            busy = len(started) - len(done) - len(failed)
            for stage in batch:
                print(f"[parallel] start {label(stage)} (worker {slot}) — done "
                      f"{len(done)}/{total}, running {busy}, left {total - len(started)}",
                      flush=True)
        if not running:
            break
        time.sleep(0.2)
        for slot, job in list(running.items()):
            code = job.poll()
            if code is None:
                continue
            del running[slot]
            stop.jobs = list(running.values())
            if locks:
                locks.check(job.stages)
            took = time.monotonic() - job.started
            text = job.log.read_text(errors="replace") if job.log.exists() else ""
            if len(job.stages) > 1:
                split_log(text, job.stages)
            bad = failed_in(text, job.stages) if code != 0 else []
            for stage in job.stages:
                if stage in bad:
                    failed.append(stage)
                    what = "STOPPED" if stop.received else "FAILED"
                    print(f"[parallel] {what} {label(stage)} (exit {code}) after {took:.1f}s; "
                          f"log: {log_file(stage)}; no new stages start", flush=True)
                else:
                    done.add(stage)
                    print(f"[parallel] done  {label(stage)} in {took:.1f}s — "
                          f"{len(done)}/{total}", flush=True)
    if not stop.received:
        for stage in failed:
            print(f"\n[parallel] {label(stage)} failed; last lines of {log_file(stage)}:\n"
                  f"{_tail(log_file(stage))}", file=sys.stderr)
    return failed


def run(targets: list[str], workers: int, gpus: list[str], force: bool = False,
        dry: bool = False, cluster: str | None = None, repo: str | None = None,
        warm: bool = True, batch: int = 4) -> int:
    other = untested_dvc()
    if other and (dry or cluster):
        raise ConfigError(f"DVC {other}: this runner drives DVC's internals and was tested "
                          f"with DVC {', '.join(TESTED_DVC)} only (requirements.lock pins it)")
    if dry:
        return _print_plan(make_plan(targets, force))
    if other:
        print(f"[parallel] DVC {other} is not a version this runner was tested with "
              f"({', '.join(TESTED_DVC)}; `make install` installs it): running plain "
              "`dvc repro` instead, one stage at a time", file=sys.stderr, flush=True)
        with RunnerLock(), Interrupts() as stop:
            return _dvc_repro(Plan({}, targets=list(targets)), force, None, stop)
    with RunnerLock(), Interrupts() as stop:
        # the warm server imports for several seconds: it starts first, so that DVC's
        # planning and the MLflow store's creation happen meanwhile; a no-op run stops it
        server = WarmServer() if warm and not cluster else None
        try:
            plan = make_plan(targets, force)
            if not plan.order:
                print("[parallel] every stage is up to date (DVC's own check); nothing to run")
                return stop.exit_code or 0
            if cluster:
                return _run_plan(plan, workers, DaskLauncher(cluster, repo or str(Path.cwd())),
                                 f"on the Dask cluster {cluster}", stop, pull=True)
            prepare_tracking_store()
            env = server.env() if server else None
            if workers == 1 and not gpus:  # DVC's own `dvc repro`, its stages started warm
                return _dvc_repro(plan, force, env, stop)
            where = f"on GPUs {','.join(gpus)}" if gpus else "here"
            return _run_plan(plan, workers, LocalLauncher(workers, gpus, env, batch), where, stop)
        finally:
            if server:
                server.stop()


def _print_plan(plan: Plan) -> int:
    for stage in plan.order:
        waits = ", ".join(sorted(map(label, plan.waits_for[stage]))) or "-"
        print(f"{label(stage)}  <- {waits}")
    return 0


def _dvc_repro(plan: Plan, force: bool, env: dict[str, str] | None, stop: Interrupts) -> int:
    locks = LockKeeper()
    proc = guarded([*DVC, "repro", *(["-f"] if force else []), *plan.targets], env)
    stop.jobs = [Job(plan.targets, Path(os.devnull), proc=proc)]
    if stop.received:  # a signal before the guard existed
        proc.send_signal(stop.received[0])
    code = proc.wait()
    locks.check()
    return _interrupted(stop) if stop.received else code


def _interrupted(stop: Interrupts) -> int:
    print("[parallel] stopped: finished stages are recorded, interrupted runs checkpointed "
          "(their MLflow runs KILLED); rerun to resume", file=sys.stderr, flush=True)
    return stop.exit_code or 130


def _run_plan(plan: Plan, workers: int, launcher: Any, where: str, stop: Interrupts,
              pull: bool = False) -> int:
    print(f"[parallel] {len(plan.order)} stages to run with {workers} workers {where}",
          flush=True)
    tic = time.monotonic()
    failed = execute(plan, workers, launcher, stop, LockKeeper())
    if stop.received:
        return _interrupted(stop)
    if failed:
        print(f"[parallel] {len(failed)} failed: {', '.join(map(label, failed))}; finished stages are "
              "recorded, rerun to resume", file=sys.stderr)
        return 1
    # locally every stage recorded itself; from a cluster this restores them all from the
    # remote's run-cache and writes the lock files once. Either way nothing may be left to run.
    if pull:
        forget_recorded(plan)
    final = subprocess.run([*DVC, "repro", *(["--pull"] if pull else []), *plan.targets],
                           capture_output=True, text=True)
    reran = [line for line in final.stdout.splitlines() if line.startswith("Running stage")]
    if final.returncode != 0 or reran:
        print(final.stdout[-3000:] + final.stderr[-3000:], file=sys.stderr)
        print(f"[parallel] the final `dvc repro` had to run {len(reran)} stage(s): "
              "the plan missed them", file=sys.stderr)
        return 1
    print(f"[parallel] all {len(plan.order)} stages done in {time.monotonic() - tic:.1f}s; "
          "`dvc repro` finds nothing left to run", flush=True)
    return 0
