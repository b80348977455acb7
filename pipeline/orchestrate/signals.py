"""Stopping a run cleanly: the signals that stop it, the exit codes they give, a child that
dies with its parent, and the runner's own handler that relays a stop to its jobs.

Inside a training run, a stop is a flag the loop reads between steps
(``pipeline/train/stop.py``), and MLflow's records are written with signals held
(``pipeline/core/tracking.py``): both belong to the run, and every run depends on them.
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.orchestrate.jobs import Job

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # each stops a run cleanly
EXIT_FOR = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child before exec (``preexec_fn``): get ``sig`` when the parent dies (Linux),
    also when it is killed with SIGKILL and cannot stop its children itself."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)


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
