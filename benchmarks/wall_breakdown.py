"""Where a `make repro`'s wall time went, read back from its MLflow store.

    python benchmarks/wall_breakdown.py                 # this repo's mlflow.db, every run
    python benchmarks/wall_breakdown.py --root /tmp/clone --since 1764380000

Splits the time of the training runs (tag ``ilkd_role = seed``) per stage into the epochs
(the sum of each run's logged ``epoch_time_s``: training steps and evaluation) and the rest
of the run (set-up, MLflow logging, checkpoints, figures, outputs); what the runs do not
cover (DVC's bookkeeping, stage starts, the parent runs, prepare/tune_select/aggregate)
is the ``between runs`` line: the covered span minus the union of the runs' intervals.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections import defaultdict
from pathlib import Path


def breakdown(db: Path, since_ms: int = 0) -> list[tuple[str, int, float, float, float]]:
    """Rows (stage, runs, seconds in runs, of which epochs, per-run rest in s)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    runs = con.execute(
        "SELECT r.run_uuid, r.start_time, r.end_time, s.value FROM runs r "
        "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'ilkd_role' AND t.value = 'seed' "
        "JOIN tags s ON s.run_uuid = r.run_uuid AND s.key = 'stage' "
        "WHERE r.start_time >= ? AND r.end_time IS NOT NULL", (since_ms,)).fetchall()
    epochs = dict(con.execute(
        "SELECT run_uuid, SUM(value) FROM (SELECT run_uuid, step, MAX(value) AS value "
        "FROM metrics WHERE key = 'epoch_time_s' GROUP BY run_uuid, step) GROUP BY run_uuid"))
    per: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    intervals = []
    for run_id, start, end, stage in runs:
        row = per[stage]
        row[0] += 1
        row[1] += (end - start) / 1000
        row[2] += epochs.get(run_id, 0.0)
        intervals.append((start / 1000, end / 1000))
    rows = [(stage, int(n), took, ep, (took - ep) / n) for stage, (n, took, ep) in
            sorted(per.items())]
    if intervals:
        intervals.sort()
        covered, (lo, hi) = 0.0, intervals[0]
        for a, b in intervals[1:]:
            if a > hi:
                covered += hi - lo
                lo, hi = a, b
            else:
                hi = max(hi, b)
        covered += hi - lo
        span = max(b for _, b in intervals) - intervals[0][0]
        rows.append(("between runs (span - runs)", len(intervals), span - covered, 0.0, 0.0))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--since", type=float, default=0.0, help="unix time (s): later runs only")
    args = parser.parse_args()
    rows = breakdown(args.root / "mlflow.db", int(args.since * 1000))
    print(f"{'stage':<28}{'runs':>6}{'in runs s':>11}{'epochs s':>10}{'rest/run s':>12}")
    for stage, n, took, ep, rest in rows:
        print(f"{stage:<28}{n:>6}{took:>11.1f}{ep:>10.1f}{rest:>12.2f}")
    body = [r for r in rows if not r[0].startswith("between")]
    print(f"{'all runs':<28}{sum(r[1] for r in body):>6}{sum(r[2] for r in body):>11.1f}"
          f"{sum(r[3] for r in body):>10.1f}")


if __name__ == "__main__":
    main()
