"""The paper's tables from the training stages' ``metrics.json`` files.

DVC outputs are the source of truth (they exist even when a stage was restored
from the run-cache and no new MLflow run was made). Each table row is one
method/variant: mean ± std over seeds, and the difference to CE *paired by seed*,
decided as the claims are (``pipeline/results/claims.py``). A seed whose run is
missing or failed is listed as missing, never silently averaged; the paired
difference uses only seeds both rows have.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.core.config import Params
from pipeline.core.metrics import pool_reliability
from pipeline.core.runs import RunSpec
from pipeline.results.decide import decide
from pipeline.results.design import METRICS, Row, Table

Lookup = Callable[[Row, int], "dict | None"]


def file_lookup(results: Path) -> Lookup:
    """Final metrics from ``results/<stage>/<name>-<seed>/metrics.json`` (DVC outputs)."""

    def lookup(row: Row, seed: int) -> dict | None:
        path = results / row.spec(seed).relative / "metrics.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    return lookup


def latest_finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The most recent FINISHED run of every stage instance, indexed by run name."""
    done = runs[runs["status"] == "FINISHED"].sort_values("start_time")
    return done.groupby("tags.mlflow.runName").tail(1).set_index("tags.mlflow.runName")


def mlflow_lookup(runs: pd.DataFrame) -> Lookup:
    """Final metrics from ``mlflow.search_runs`` output (latest finished run per instance)."""
    latest = latest_finished(runs)

    def lookup(row: Row, seed: int) -> dict | None:
        name = row.spec(seed).run_name
        if name not in latest.index:
            return None
        record = latest.loc[name]
        return {k.removeprefix("metrics."): v for k, v in record.items()
                if k.startswith("metrics.") and pd.notna(v)}

    return lookup


def load_runs(lookup: Lookup, row: Row, seeds: Sequence[int]) -> dict[int, dict | None]:
    """``{seed: metrics or None}``; None marks a missing or failed (non-finite) run."""
    out: dict[int, dict | None] = {}
    for seed in seeds:
        metrics = lookup(row, seed)
        ok = metrics is not None and all(
            math.isfinite(metrics.get(k, float("nan"))) for k in ("test_acc", "test_nll"))
        out[seed] = metrics if ok else None
    return out


def summarize(table: Table, source: Path | Lookup, seeds: Sequence[int],
              margin: float = 1.0, alpha: float = 0.05) -> pd.DataFrame:
    """One row per table row; ``source`` is a results folder or a :data:`Lookup`. The
    difference to the reference row is decided as a claim is (``decide``: better, worse,
    equivalent within ``margin``, or undecided) at the two-sided error rate ``alpha``."""
    results = file_lookup(source) if isinstance(source, Path) else source
    ce_runs = load_runs(results, table.reference, seeds)
    records = []
    for row in table.rows:
        runs = load_runs(results, row, seeds)
        done = {s: m for s, m in runs.items() if m is not None}
        record: dict[str, object] = {"method": row.label, "stage": row.stage, "name": row.name,
                                     "seeds": len(done),
                                     "missing_seeds": " ".join(str(s) for s, m in runs.items()
                                                               if m is None)}
        for key in METRICS:
            values = [m[key] for m in done.values() if key in m]
            if values:
                record[f"{key}_mean"] = float(np.mean(values))
                record[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        pairs = [done[s]["test_acc"] - ce_runs[s]["test_acc"]
                 for s in done if ce_runs.get(s) is not None]
        found = decide(pairs, margin, alpha)
        is_ce = row == table.reference
        record.update(d_acc_vs_ce=found.mean, d_acc_ci_low=found.low, d_acc_ci_high=found.high,
                      paired_seeds=found.n, alpha=alpha,
                      verdict="reference" if is_ce else found.label("better", "worse"))
        records.append(record)
    return pd.DataFrame.from_records(records)


def histories(results: Path, row: Row, seeds: Sequence[int]) -> list[pd.DataFrame]:
    frames = []
    for seed in seeds:
        path = results / row.spec(seed).relative / "history.csv"
        if path.is_file():
            frames.append(pd.read_csv(path))
    return frames


def pooled_reliability(results: Path, row: Row, seeds: Sequence[int]) -> dict | None:
    """Reliability bins pooled over seeds (counts add; accuracy/confidence count-weighted)."""
    parts = []
    for seed in seeds:
        path = results / row.spec(seed).relative / "reliability.json"
        if path.is_file():
            parts.append(json.loads(path.read_text()))
    if not parts:
        return None
    pooled: dict = pool_reliability(parts)
    counts = np.asarray(pooled["count"])
    gap = np.abs(np.asarray(pooled["accuracy"]) - np.asarray(pooled["confidence"]))
    pooled["ece"] = float((gap * counts).sum() / max(counts.sum(), 1))
    return pooled


def teacher_line(results: Path, reference: Row, params: Params) -> str:
    """The teacher's test accuracy beside the CE student's, with a warning when it is no
    better (then T1 and T3 distil a teacher that knows less than its student)."""
    from pipeline.train.teachers import teacher_summary

    seeds = params.seeds
    summary = teacher_summary(params, results)
    if summary is None:
        return ""
    teacher = summary["test_acc"]
    if summary["teachers"] > 1:  # data.split_seed: per_seed: their mean
        teacher_text = f"{teacher:.2f}% (mean of {summary['teachers']} per-seed teachers)"
    else:
        teacher_text = f"{teacher:.2f}%"
    runs = [m for m in load_runs(file_lookup(results), reference, seeds).values() if m]
    if not runs:
        return f"Teacher: test top-1 {teacher_text}.\n"
    student = float(np.mean([m["test_acc"] for m in runs]))
    line = (f"Teacher: test top-1 {teacher_text}; {reference.label} student: {student:.2f}% "
            f"(mean of {len(runs)} seeds).")
    if teacher <= student:
        line = f"**Warning: the teacher is not better than its student.** {line}"
    return line + "\n"


def similarity_rows(results: Path, params: Params,
                    teacher: np.ndarray | None) -> pd.DataFrame:
    """Per IL run: Spearman rank correlation (off-diagonal) of its class similarity with the
    teacher's mean softmax, both on the test split."""
    from pipeline.core.io import read_matrix
    from pipeline.methods.analysis import off_diagonal

    records = []
    for variant in params.introspective_ablation.variants:
        for seed in params.seeds:
            spec = RunSpec.of("introspective", variant, seed)
            path = results / spec.relative / "similarity.csv"
            if teacher is None or not path.is_file():
                continue
            rho = stats.spearmanr(off_diagonal(read_matrix(path)), off_diagonal(teacher))
            records.append({"variant": variant, "seed": seed,
                            "rank_corr_teacher": float(np.nan_to_num(rho.statistic))})
    return pd.DataFrame.from_records(records, columns=["variant", "seed", "rank_corr_teacher"])
