"""The lock files: one runner per repository, the last good copy of each ``dvc.lock`` kept
and put back when a killed process cut it, and entries dropped before a cluster's
results are restored from the run-cache."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from pipeline.core.errors import ConfigError
from pipeline.orchestrate.jobs import LOG_DIR
from pipeline.orchestrate.plan import Plan, label, lock_of
from pipeline.tools.report import lock_files


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
