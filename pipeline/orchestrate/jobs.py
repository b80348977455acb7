"""Starting stages: a guarded DVC process per stage or batch in this workspace, or a task on a
Dask cluster in a clone of its own; each stage's log under ``LOG_DIR``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError
from pipeline.core.paths import RUNNER_DIR
from pipeline.orchestrate.plan import label
from pipeline.orchestrate.signals import die_with_parent

LOG_DIR = RUNNER_DIR
DVC = [sys.executable, "-m", "dvc"]
GUARD = [sys.executable, "-m", "pipeline.orchestrate.guard", "--"]


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
    """``cmd`` (a DVC process) under ``pipeline/orchestrate/guard.py``, out of the terminal's reach:
    a stop reaches its stage commands through the guard, never DVC itself while it writes a
    lock file; if this process dies, even by SIGKILL, the guard stops the run the same way."""
    return subprocess.Popen([*GUARD, *cmd], env=env, start_new_session=True,
                            preexec_fn=die_with_parent, **popen)


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
