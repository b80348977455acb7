"""Stop a DVC process cleanly: its stage commands get the interrupt, DVC itself never does.

DVC rewrites a part's whole ``dvc.lock`` after every stage, with a plain ``open("w")``. A
DVC process interrupted while it writes leaves the file cut in the middle of an entry, and
every later ``dvc`` command then fails on it: the records of every finished stage of that
part are gone. A terminal's Ctrl-C reaches every process of its foreground group at once, so
with several DVC processes running (``make repro J=2``) one of them is, sooner or later,
caught writing.

So the runner (``pipeline/orchestrate/runner.py``) starts each DVC process through this guard,
in a session of its own that no terminal signal reaches. The guard relays a signal it gets
(SIGINT, SIGTERM, SIGHUP; from the runner, or because the runner died: the parent-death
signal) to DVC's *children*, the stage commands: a training stage checkpoints and exits
130, its MLflow run marked KILLED, and DVC records nothing for it. DVC itself then exits
after finishing whatever bookkeeping it was doing, and no new stage command starts: each
sees the stop file (:func:`refuse_if_stopping`, called by ``stages/__init__.py``) and exits
at once. A second signal is relayed too (a training stage then stops without finishing its
step); after ``KILL_AFTER`` seconds the stage commands are killed. DVC is never signalled.

    python -m pipeline.orchestrate.guard -- python -m dvc repro ...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.orchestrate.signals import EXIT_FOR, SIGNALS

STOP_ENV = "ILKD_STOP_FILE"
KILL_AFTER = 120.0  # seconds after the first signal: the stage commands are killed


def refuse_if_stopping() -> None:
    """Exit 130 before a stage starts when the run it belongs to is being stopped."""
    path = os.environ.get(STOP_ENV)
    if path and os.path.exists(path):
        print("[ilkd] the run is stopping: this stage does not start", file=sys.stderr)
        sys.exit(130)


def _children(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _send(processes: list, sig: int) -> None:
    import psutil

    for proc in processes:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass


def guard(cmd: list[str]) -> int:
    """Run ``cmd`` in its own session; relay signals to its children only; return its
    exit code, or 128 + the signal's number when a signal stopped the run."""
    received: list[int] = []
    for sig in SIGNALS:
        signal.signal(sig, lambda signum, frame: received.append(signum))
    stop_file = Path(tempfile.mkdtemp(prefix="ilkd-guard-")) / "stop"
    env = {**os.environ, STOP_ENV: str(stop_file)}
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    relayed, first, signalled = 0, None, set()
    try:
        while True:
            try:
                proc.wait(timeout=0.1)  # polls ever less often, up to every 0.05 s
                break
            except subprocess.TimeoutExpired:
                pass
            children = _children(proc.pid) if received else []
            if len(received) > relayed:  # a new signal: every stage command gets it
                stop_file.touch()
                first = first or time.monotonic()
                for sig in received[relayed:]:
                    _send(children, sig)
                relayed = len(received)
                signalled.update(c.pid for c in children)
            elif first is not None:  # stopping: a command started since gets it too
                _send([c for c in children if c.pid not in signalled], received[0])
                signalled.update(c.pid for c in children)
                if time.monotonic() - first > KILL_AFTER:
                    _send(children, signal.SIGKILL)
    finally:
        stop_file.unlink(missing_ok=True)
        stop_file.parent.rmdir()
    return EXIT_FOR.get(received[0], 128 + received[0]) if received else proc.returncode


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit("usage: python -m pipeline.orchestrate.guard -- COMMAND [ARGS...]")
    sys.exit(guard(args))


if __name__ == "__main__":
    main()
