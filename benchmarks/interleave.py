"""Time variants step by step, interleaved, so a busy machine slows them all alike.

Timing variant A for a while and then variant B measures whatever else the machine did
in each window (on a shared 2-core box that once reported IL at 0.17x CE). Here every
round runs one step of each variant in turn (A, B, C, A, B, C, ...); the ratio of a
variant to the reference is taken within each round, and the median ratio over rounds
and its interquartile range are reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(units: dict[str, Callable[[], None]], rounds: int = 30, warmup: int = 3,
                sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds of each unit in each of ``rounds`` rounds (after ``warmup`` untimed rounds)."""
    times: dict[str, list[float]] = {name: [] for name in units}
    for r in range(warmup + rounds):
        for name, unit in units.items():
            sync()
            tic = time.perf_counter()
            unit()
            sync()
            if r >= warmup:
                times[name].append(time.perf_counter() - tic)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def ratio_rows(times: dict[str, list[float]], reference: str) -> list[tuple[str, float, float,
                                                                             float, float]]:
    """``(name, median ms, median ratio, ratio q1, ratio q3)``, ratios paired by round."""
    rows = []
    for name, values in times.items():
        ratios = [v / ref for v, ref in zip(values, times[reference], strict=True)]
        q1, med, q3 = quartiles(ratios)
        rows.append((name, 1000 * statistics.median(values), med, q1, q3))
    return rows


def markdown(rows, label: str = "ratio") -> str:
    lines = [f"| variant | median step ms | {label} (median) | IQR |", "|---|---|---|---|"]
    lines += [f"| {n} | {ms:.1f} | {r:.2f} | {q1:.2f}-{q3:.2f} |" for n, ms, r, q1, q3 in rows]
    return "\n".join(lines)
