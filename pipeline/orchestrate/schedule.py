"""Wall time of the DAG's training runs on W workers: a list-scheduling simulation.

``make estimate`` measures each kind of run's epoch time; this module turns those into
the wall time ``python -m pipeline.tools.parallel -j W`` (or ``--gpus N --per-gpu K``,
W = N x K) would take if the workers did not slow each other. The runner starts a ready
stage whenever a worker is free; here the ready stage on the longest remaining path goes
first (critical-path list scheduling), which is what a good runner does and at most
what any order needs beyond the lower bounds printed beside it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    name: str
    seconds: float
    after: tuple[str, ...] = field(default=())  # names of the tasks it waits for


def _order(tasks: Sequence[Task]) -> list[Task]:
    """The tasks parents first (Kahn); an unknown parent or a cycle is an error."""
    names = {t.name for t in tasks}
    for t in tasks:
        missing = set(t.after) - names
        if missing:
            raise ValueError(f"{t.name}: waits for unknown tasks {sorted(missing)}")
    left = {t.name: set(t.after) for t in tasks}
    order: list[Task] = []
    while left:
        free = sorted(n for n, deps in left.items() if not deps)
        if not free:
            raise ValueError("the tasks' dependencies form a cycle")
        order += [t for t in tasks if t.name in free]
        for name in free:
            del left[name]
        for deps in left.values():
            deps.difference_update(free)
    return order


def critical_path(tasks: Sequence[Task]) -> dict[str, float]:
    """Per task, the longest chain of work from its start to the end of the DAG."""
    order = _order(tasks)
    own = {t.name: t.seconds for t in order}
    rest = dict(own)
    for t in reversed(order):  # children before parents
        for parent in t.after:
            rest[parent] = max(rest[parent], own[parent] + rest[t.name])
    return rest


def makespan(tasks: Sequence[Task], workers: int) -> float:
    """When the last task ends, with ``workers`` running ready tasks, longest remaining
    path first (ties by name)."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    priority = critical_path(tasks)
    waiting = {t.name: set(t.after) for t in tasks}
    by_name = {t.name: t for t in tasks}
    ready = [(-priority[n], n) for n, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []  # (end time, name)
    now = 0.0
    while ready or running:
        while ready and len(running) < workers:
            _, name = heapq.heappop(ready)
            heapq.heappush(running, (now + by_name[name].seconds, name))
        now, finished = heapq.heappop(running)
        for child, deps in waiting.items():
            if finished in deps:
                deps.discard(finished)
                if not deps:
                    heapq.heappush(ready, (-priority[child], child))
    return now
