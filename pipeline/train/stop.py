"""Clean stops inside a training loop: a signal sets a flag the loop reads after a step."""

from __future__ import annotations

from typing import Any


class StopRequest:
    """SIGINT/SIGTERM set a flag instead of raising, so the current step finishes cleanly.

    A second signal falls back to the default behaviour (an immediate KeyboardInterrupt).
    Outside the main thread signals cannot be handled; the flag then stays unset.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"[ilkd] signal {signum}: finishing the current step, then checkpointing",
              flush=True)

    def __enter__(self) -> StopRequest:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
