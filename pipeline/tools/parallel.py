"""Run the DVC pipeline with N workers (``make repro J=N``), here or on a Dask cluster.

    python -m pipeline.tools.parallel -j 2                  # CPU: cores split among workers
    python -m pipeline.tools.parallel -j 8 --gpus 0,1,2,3   # 2 workers per GPU
    python -m pipeline.tools.parallel -j 2 aggregate        # only what `aggregate` needs
    python -m pipeline.tools.parallel kd_ablation baselines@ce-0   # T1's runs, one CE run
    python -m pipeline.tools.parallel --dry                 # print the plan
    python -m pipeline.tools.parallel -j 16 --cluster tcp://head:8786 --repo <git url>

Locally, every stage command is handed to a warm process that imported torch and MLflow
once (``pipeline/tools/warm.py``; ``--cold`` turns it off): a stage then starts in about
0.5 s instead of 5 s. With ``-j 1`` this is a plain ``dvc repro`` under that warm process.
Either way it first asks DVC which stages changed: when none did, it stops there (2.5-3.2 s,
median 2.7 s, on the quick profile, against 2.7-3.3 s, median 2.9 s, for a no-op ``dvc
repro``, measured interleaved).

DVC runs stages one at a time. With ``-j N`` this walks DVC's own graph instead: it asks DVC which
stages changed, adds everything downstream of them, and starts ``dvc --wait-for-lock
repro -s <stage>`` for every stage whose upstream stages are done, at most N at once,
those with the most stages downstream first (the teacher and the tuning runs gate most of
the DAG). Each such process records its own stages in their lock file and the run-cache
(DVC's repo lock makes their bookkeeping take turns; training runs concurrently). Stages
that only the last stage waits for (every training instance: ``aggregate`` needs them all)
go several to one process (``--batch``, with ``-k``: one failure does not stop the others),
since each DVC process spends ~0.7 s CPU reading the DAG before it runs anything; batches
shrink as the ready stages run out, so workers finish together. A final plain ``dvc repro``
must then find nothing left to do. A failed stage stops new launches; running ones finish,
everything finished stays recorded, and rerunning resumes. Logs, one per stage:
``.dvc/tmp/parallel/``.

With ``--cluster`` the same plan goes to a Dask cluster: each stage runs on a worker in its
own clone at the current commit (``remote_stage``), upstream outputs come from the DVC
remote's run-cache, MLflow goes to the shared ``MLFLOW_TRACKING_URI``; the final
``dvc repro --pull`` here restores every stage and writes the lock files once.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.cli import main as cli_main
from pipeline.core.errors import ConfigError
from pipeline.core.paths import RUNNER_DIR
from pipeline.tools.guard import die_with_parent
from pipeline.tools.report import lock_files
from pipeline.tools.warm import WarmServer

# DVC versions whose internals this runner uses (repo.index.graph, stage.changed(), the
# wording of its log lines) were tested with: major.minor
TESTED_DVC = ("3.67",)
LOG_DIR = RUNNER_DIR
DVC = [sys.executable, "-m", "dvc"]
GUARD = [sys.executable, "-m", "pipeline.tools.guard", "--"]


@dataclass
class Plan:
    """Stages to run and, for each, the stages in the plan it waits for."""

    waits_for: dict[str, set[str]]  # keyed by DVC's address, e.g. dag/tune/dvc.yaml:tune@ce
    order: list[str] = field(default_factory=list)  # a topological order, for display
    targets: list[str] = field(default_factory=list)  # the targets asked for, as addresses
    downstream: dict[str, int] = field(default_factory=dict)  # plan stages waiting on each

    def ready(self, done: set[str], started: set[str]) -> list[str]:
        """Stages whose upstream is done, those that gate the most of the plan first."""
        ready = [s for s in self.order if s not in started and self.waits_for[s] <= done]
        return sorted(ready, key=lambda s: -self.downstream.get(s, 0))

    def batch(self, ready: list[str], workers: int, cap: int) -> list[str]:
        """What one worker starts next: the first ready stage alone, or, when only the last
        stage waits for it, up to ``cap`` such stages (fewer as they run out)."""
        first = ready[0]
        if cap <= 1 or self.downstream.get(first, 0) > 1:
            return [first]
        leaves = [s for s in ready if self.downstream.get(s, 0) <= 1]
        return leaves[:max(1, min(cap, len(leaves) // (2 * workers)))]


def label(address: str) -> str:
    """A stage's name without its dvc.yaml path: ``baselines@ce-0``."""
    return address.rsplit(":", 1)[-1]


def make_plan(targets: Iterable[str] = (), force: bool = False) -> Plan:
    """Changed stages (DVC's own check) and everything downstream of them.

    A target is a stage's DVC address, its bare name (``baselines@ce-0``: names are unique
    across the repo's dvc.yaml files) or a matrix stage's name for all its instances
    (``kd_ablation``), as ``dvc repro`` takes them within one dvc.yaml.
    """
    from dvc.exceptions import DvcException

    try:
        return _plan(targets, force)
    except DvcException as exc:  # a broken dvc.yaml, params.yaml or lock file: DVC's words
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise ConfigError(f"{exc}{cause}".replace("\n", " ")) from None


def _plan(targets: Iterable[str], force: bool) -> Plan:
    import networkx as nx
    from dvc.repo import Repo

    with Repo() as repo:
        graph = repo.index.graph  # edge: stage -> a stage it depends on
        named: dict[str, list[Any]] = {}
        for stage in graph.nodes:
            for key in {stage.addressing, label(stage.addressing),
                        label(stage.addressing).split("@")[0]}:
                named.setdefault(key, []).append(stage)
        unknown = [t for t in targets if t not in named]
        if unknown:
            known = sorted(k for k in named if ":" not in k)
            raise ConfigError(f"dvc.yaml: no stage named {', '.join(unknown)} "
                              f"(known: e.g. {', '.join(known[:6])}, ...)")
        asked = {s for t in targets for s in named[t]}
        scope = set(graph.nodes)
        if targets:
            scope = set().union(*[{s, *nx.descendants(graph, s)} for s in asked])
        with repo.lock:
            changed = {s for s in scope if force or s.changed()}
        reverse = graph.reverse(copy=False)  # edge: stage -> a stage that depends on it
        run = set(changed)
        for stage in changed:
            run |= nx.descendants(reverse, stage) & scope
        order = [s for s in reversed(list(nx.topological_sort(graph))) if s in run]
        waits = {s.addressing: {d.addressing for d in nx.descendants(graph, s) if d in run}
                 for s in order}
        downstream = {s.addressing: len(nx.descendants(reverse, s) & run) for s in order}
    return Plan(waits, [s.addressing for s in order], sorted(s.addressing for s in asked),
                downstream)


def worker_env(slot: int, workers: int, gpus: list[str],
               base: dict[str, str] | None = None) -> dict[str, str]:
    """One GPU (or a share of one) per worker, and the cores split among workers either
    way (K packed GPU workers x every core each would oversubscribe the host)."""
    env = dict(os.environ if base is None else base)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    return env


def prepare_tracking_store() -> None:
    """Create the local MLflow store once: parallel first-time migrations would collide."""
    from pipeline.core.tracking import repo_root, resolve_tracking_uri

    uri = resolve_tracking_uri()
    if uri.startswith("sqlite:") and not (repo_root() / "mlflow.db").exists():
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri=uri).search_experiments()


class Job:
    """Running stages: a local DVC process (one stage or a batch), or a task on a Dask
    cluster (one stage)."""

    def __init__(self, stages: list[str], log: Path, proc: subprocess.Popen | None = None,
                 future: Any = None) -> None:
        self.stages, self.log, self.proc, self.future = stages, log, proc, future
        self.started = time.monotonic()

    def poll(self) -> int | None:
        if self.proc is not None:
            return self.proc.poll()
        if not self.future.done():
            return None
        try:
            code, text = self.future.result()
        except Exception as exc:  # the worker died or the task raised
            code, text = 1, f"{type(exc).__name__}: {exc}"
        self.log.write_text(text)
        return code

    def signal(self, signum: int) -> None:
        """Relay a stop to a local job's guard (a cluster task runs to its end)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)


def guarded(cmd: list[str], env: dict[str, str] | None, **popen: Any) -> subprocess.Popen:
    """``cmd`` (a DVC process) under ``pipeline/tools/guard.py``, out of the terminal's reach:
    a stop reaches its stage commands through the guard, never DVC itself while it writes a
    lock file; if this process dies, even by SIGKILL, the guard stops the run the same way."""
    return subprocess.Popen([*GUARD, *cmd], env=env, start_new_session=True,
                            preexec_fn=die_with_parent, **popen)


class Interrupts:
    """SIGINT (Ctrl-C), SIGTERM and SIGHUP to the runner: recorded, no new stage starts, and
    each is relayed to the running jobs' guards, which stop their stage commands."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.jobs: list[Job] = []
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.received:
            print(f"\n[parallel] {signal.Signals(signum).name}: stopping the running stages "
                  "(each checkpoints); finished stages stay recorded", file=sys.stderr, flush=True)
        self.received.append(signum)
        for job in self.jobs:
            job.signal(signum)

    def __enter__(self) -> Interrupts:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def exit_code(self) -> int | None:
        """128 + the first signal's number (130 for Ctrl-C), None when none came."""
        return 128 + self.received[0] if self.received else None


class LockKeeper:
    """The last copy of each lock file that parsed, kept under ``LOG_DIR/locks``: a lock file
    that no longer parses (a DVC process killed while writing it) is put back, and the stages
    recorded since are restored from DVC's run-cache by the next ``dvc repro``, not retrained."""

    def __init__(self, folder: Path = LOG_DIR / "locks") -> None:
        self.folder = folder
        self.check()

    def check(self, stages: Iterable[str] | None = None) -> list[Path]:
        """Keep a copy of every lock file that parses (only those of ``stages``' parts when
        given); put back the ones that do not. Returns those put back."""
        import shutil

        import yaml

        restored = []
        wanted = None if stages is None else {lock_of(s) for s in stages}
        for lock in lock_files():
            if wanted is not None and lock not in wanted:
                continue
            kept = self.folder / lock
            try:
                data = yaml.load(lock.read_text(),
                                 Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
                if not isinstance(data, dict) or "stages" not in data:  # cut before any entry
                    raise yaml.YAMLError(f"{lock}: no stages")
            except (yaml.YAMLError, OSError):
                if kept.is_file():
                    shutil.copy2(kept, lock)
                    restored.append(lock)
                    print(f"[parallel] {lock} did not parse: put back its last good copy; "
                          "rerun to restore the stages recorded since from the run-cache",
                          file=sys.stderr, flush=True)
                continue
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lock, kept)
        return restored


def log_file(stage: str) -> Path:
    return LOG_DIR / f"{label(stage).replace('@', '_').replace('/', '_')}.log"


_STAGE_LINE = re.compile(r"^(?:Running stage|Stage) '([^']+)'")


def split_log(text: str, stages: list[str]) -> None:
    """Write each stage's part of a batch's DVC output to its own log file: a part starts
    at DVC's ``Running stage '<address>'`` (or ``Stage '<address>' didn't change``)."""
    parts: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines(keepends=True):
        found = _STAGE_LINE.match(line)
        if found and found.group(1) in stages:
            current = parts.setdefault(found.group(1), [])
        current.append(line)
    for stage in stages:
        log_file(stage).write_text("".join(parts.get(stage, [])) or text)


def failed_in(text: str, stages: list[str]) -> list[str]:
    """The stages of a failed batch DVC names in ``failed to reproduce 'a', 'b' and 'c'``;
    all of them when it names none (the process was killed)."""
    named = [name for line in text.splitlines() if "failed to reproduce" in line
             for name in re.findall(r"'([^']+)'", line)]
    return [s for s in stages if s in named] or list(stages)


class LocalLauncher:
    """``dvc --wait-for-lock repro -s <stage>...`` in this workspace, one process per batch."""

    def __init__(self, workers: int, gpus: list[str], env: dict[str, str] | None = None,
                 batch: int = 4) -> None:
        self.workers, self.gpus, self.env, self.batch = workers, gpus, env, batch

    def start(self, stages: list[str], slot: int) -> Job:
        log = log_file(stages[0])
        if len(stages) > 1:  # split into each stage's own log_file when it ends
            log = log.with_name(f"batch-{log.name}")
        keep_going = ["-k"] if len(stages) > 1 else []
        with log.open("w") as handle:
            proc = guarded([*DVC, "--wait-for-lock", "repro", *keep_going, "-s", *stages],
                           worker_env(slot, self.workers, self.gpus, self.env),
                           stdout=handle, stderr=subprocess.STDOUT)
        return Job(stages, log, proc=proc)


def remote_stage(stage: str, repo: str, commit: str, env: dict[str, str]) -> tuple[int, str]:
    """What a cluster worker does for one stage: a fresh clone at the run's commit restores
    every upstream stage from the DVC remote's run-cache (``repro --pull``), runs its stage,
    and pushes the outputs and run-cache back. Returns the exit code and the log."""
    import tempfile

    log: list[str] = []
    # stage commands say `python`: the worker's own interpreter (its environment) runs them
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, **env, "PATH": path, "DVC_NO_ANALYTICS": "1"}
    with tempfile.TemporaryDirectory(prefix="ilkd-stage-") as tmp:
        steps = [["git", "clone", "-q", repo, tmp], ["git", "checkout", "-q", commit],
                 [*DVC, "repro", "--pull", stage], [*DVC, "push", "--run-cache"]]
        for cmd in steps:
            done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
            log.append(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}")
            if done.returncode != 0:
                return done.returncode, "\n".join(log)
    return 0, "\n".join(log)


class DaskLauncher:
    """Stages as tasks on a Dask cluster (``dask scheduler`` + ``dask worker`` on each
    machine): each runs in its own clone at the current commit, the DVC remote carries the
    data between machines, MLflow goes to ``MLFLOW_TRACKING_URI`` (a shared server)."""

    batch = 1  # each task clones the repo and pulls its inputs: one stage per task

    def __init__(self, address: Any, repo: str) -> None:
        from distributed import Client

        commit = _git("rev-parse", "HEAD")
        if _git("status", "--porcelain", "--untracked-files=no"):
            raise ConfigError("the workspace has uncommitted changes: commit them (and push to "
                              f"{repo}) so every worker runs the same code and params")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            raise ConfigError("MLFLOW_TRACKING_URI: set it to the shared tracking server; "
                              "workers cannot reach this machine's mlflow.db")
        self.client = Client(address)
        self.repo, self.commit = repo, commit
        self.env = {"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}

    def start(self, stages: list[str], slot: int) -> Job:
        stage, = stages
        future = self.client.submit(remote_stage, stage, self.repo, self.commit, self.env,
                                    key=f"ilkd-{stage}-{time.time_ns()}", pure=False)
        return Job(stages, log_file(stage), future=future)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


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


class RunnerLock:
    """One runner per repository: a second one would fail on DVC's own lock with a trace
    (or interleave with the first); it is refused with one line naming the first's pid."""

    def __init__(self, path: Path = LOG_DIR / "runner.pid") -> None:
        self.path = path

    def __enter__(self) -> RunnerLock:
        import fcntl

        if not Path(".dvc").is_dir():  # the lock lives in .dvc/tmp: never make one elsewhere
            raise ConfigError(f"{Path.cwd()}: not a DVC project (no .dvc folder); run from "
                              "the project's root")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            other = self.handle.read().strip() or "?"
            self.handle.close()
            raise ConfigError(f"another runner (pid {other}) is running in this repository; "
                              f"wait for it, or stop it with `kill -INT {other}`") from None
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"{os.getpid()}\n")
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()  # closing releases the lock; a killed runner's is released too


def untested_dvc() -> str | None:
    """The installed DVC's version when this runner was not tested with it, else None."""
    from importlib.metadata import version

    found = version("dvc")
    return None if ".".join(found.split(".")[:2]) in TESTED_DVC else found


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


def lock_of(address: str) -> Path:
    """The lock file that records a stage: ``dag/tune/dvc.yaml:tune@ce`` ->
    ``dag/tune/dvc.lock``, a spine stage (``prepare``) -> ``dvc.lock``."""
    path = address.rpartition(":")[0]
    return Path(path or "dvc.yaml").with_suffix(".lock")


def forget_recorded(plan: Plan) -> None:
    """Drop the lock entries of the stages the cluster ran, before the final ``dvc repro
    --pull`` records them from the remote's run-cache.

    A committed entry (this repository's own lock files, written on another machine) names
    outputs that are in no remote. For a stage whose dependencies still match that entry,
    DVC restores *the entry's* outputs instead of looking the stage up in the run-cache,
    fails to pull them and retrains the stage here; without the entry it takes the
    workers' results from the run-cache (``dvc/stage/cache.py``, ``restore``)."""
    import yaml

    from pipeline.core.io import atomic_write_text

    by_file: dict[Path, set[str]] = {}
    for address in plan.order:
        by_file.setdefault(lock_of(address), set()).add(label(address))
    for lock, names in by_file.items():
        if not lock.is_file():
            continue
        data = yaml.safe_load(lock.read_text()) or {}
        stages = data.get("stages") or {}
        if not names & set(stages):
            continue
        data["stages"] = {k: v for k, v in stages.items() if k not in names}
        atomic_write_text(lock, yaml.safe_dump(data, sort_keys=False))


def positive(text: str) -> int:
    """argparse type: an integer >= 1 (``-j 0`` used to mean 'the default' silently)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: need at least 1")
    return value


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="stages to reproduce (default: all)")
    parser.add_argument("-j", "--jobs", type=positive, default=None,
                        help="workers (default: the GPU slots, else 1)")
    parser.add_argument("--gpus", default="", help="comma-separated GPU ids, e.g. 0,1")
    parser.add_argument("--per-gpu", type=positive, default=1,
                        help="workers sharing one GPU (small models fit several)")
    parser.add_argument("-f", "--force", action="store_true", help="rerun even unchanged stages")
    parser.add_argument("--dry", action="store_true", help="print the plan and exit")
    parser.add_argument("--cold", action="store_true", help="start every stage in a fresh "
                        "process (no warm server; slower, for comparison)")
    parser.add_argument("--batch", type=positive, default=4, help="at most this many training "
                        "instances per DVC process (1: one process per stage)")
    parser.add_argument("--cluster", help="Dask scheduler address (tcp://host:8786): run the "
                        "stages on its workers, each in its own clone")
    parser.add_argument("--repo", help="with --cluster: the git URL workers clone "
                        "(default: this workspace's path, for a shared file system)")
    args = parser.parse_args(argv)
    gpus = [g for g in args.gpus.split(",") if g] * args.per_gpu
    workers = args.jobs or max(1, len(gpus))
    sys.exit(run(args.targets, workers, gpus, args.force, args.dry, args.cluster, args.repo,
                 warm=not args.cold, batch=args.batch))


if __name__ == "__main__":
    cli_main(entry)
