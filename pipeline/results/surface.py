"""The response surface's table: each point's validation accuracy and its paired difference
to the reference on the same seeds (``results/surface``, written by ``surface@<x>-<y>`` and
``surface_reference``; :mod:`pipeline.train.surface`).

Each seed is one subset shared by a point and the reference, so the difference is paired per
seed, as in the claims; its t-interval is per point with no correction over the grid: the
surface is a map of where a method could beat the reference, read on validation, not a claim.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.config import Params
from pipeline.core.paths import SURFACE_RECORD
from pipeline.core.runs import SURFACE_REFERENCE, surface_point
from pipeline.methods import REGISTRY
from pipeline.results.decide import t_interval

LEVEL = 0.95  # each point's interval (descriptive: no multiplicity correction)


def _record(folder: Path) -> dict | None:
    path = folder / SURFACE_RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return None if record.get("skipped") else record


def _interval(d: np.ndarray) -> tuple[float, float]:
    if len(d) < 2:
        return float("nan"), float("nan")
    return t_interval(float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))), len(d), LEVEL)


def surface_frame(params: Params, folder: Path) -> pd.DataFrame:
    """One row per point with a record: the knobs' values, seeds, validation top-1 mean and
    sd, and the paired difference to the reference (mean, interval); empty when the surface
    is off or nothing has run. The reference's own mean and sd sit in every row."""
    s = params.surface
    reference = _record(folder / SURFACE_REFERENCE)
    ref_acc = dict(zip(reference["seeds"], reference["val_acc"], strict=True)) if reference else {}
    rows = []
    for x in s.x:
        for y in s.y:
            record = _record(folder / surface_point(x, y))
            if record is None:
                continue
            acc = dict(zip(record["seeds"], record["val_acc"], strict=True))
            paired = sorted(set(acc) & set(ref_acc))
            d = np.array([acc[k] - ref_acc[k] for k in paired])
            low, high = _interval(d)
            values = np.array(list(acc.values()))
            rows.append({s.knobs[0]: x, s.knobs[1]: y, "seeds": len(values),
                         "val_acc": values.mean(),
                         "val_acc_sd": values.std(ddof=1) if len(values) > 1 else float("nan"),
                         "paired_seeds": len(d), "d_val_acc": d.mean() if len(d) else float("nan"),
                         "d_ci_low": low, "d_ci_high": high})
    df = pd.DataFrame(rows)
    if not df.empty and ref_acc:
        ref = np.array(list(ref_acc.values()))
        df["reference_val_acc"] = ref.mean()
        df["reference_val_acc_sd"] = ref.std(ddof=1) if len(ref) > 1 else float("nan")
    return df


def surface_markdown(params: Params, df: pd.DataFrame) -> str:
    """The table with a sentence on what it shows: the best point, and how many points'
    intervals lie above or below the reference."""
    s = params.surface
    label, ref = REGISTRY[s.method].label, REGISTRY[s.reference].label
    fixed = ", ".join(f"{k} {v}" for k, v in s.fixed.items())
    lines = [f"### Response surface — {label}'s validation top-1 over {s.knobs[0]} x "
             f"{s.knobs[1]}", "",
             f"Every other key at {label}'s tuned recipe{f' ({fixed})' if fixed else ''}; "
             f"{len(s.seeds)} seeds per point; Δ = point − {ref} (tuned) on the same seeds, "
             f"with a per-point {LEVEL:.0%} t-interval (no correction over the grid: a map, "
             "not a claim).", ""]
    if "reference_val_acc" in df:
        lines += [f"{ref} (tuned): {df['reference_val_acc'].iloc[0]:.2f} ± "
                  f"{df['reference_val_acc_sd'].iloc[0]:.2f} (mean ± sd over seeds).", ""]
        above = int((df["d_ci_low"] > 0).sum())
        below = int((df["d_ci_high"] < 0).sum())
        best = df.loc[df["d_val_acc"].idxmax()]
        lines += [f"Best point: {s.knobs[0]} {best[s.knobs[0]]}, {s.knobs[1]} "
                  f"{best[s.knobs[1]]}, Δ {best['d_val_acc']:+.2f}. Intervals above 0: "
                  f"{above} of {len(df)} points; below 0: {below}.", ""]
    lines += [f"| {s.knobs[0]} | {s.knobs[1]} | seeds | val top-1 (%) | Δ vs {ref} | "
              f"{LEVEL:.0%} CI |", "|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        ci = "" if np.isnan(r["d_ci_low"]) else f"[{r['d_ci_low']:+.2f}, {r['d_ci_high']:+.2f}]"
        delta = "" if np.isnan(r["d_val_acc"]) else f"{r['d_val_acc']:+.2f}"
        lines.append(f"| {r[s.knobs[0]]} | {r[s.knobs[1]]} | {int(r['seeds'])} | "
                     f"{r['val_acc']:.2f} ± {r['val_acc_sd']:.2f} | {delta} | {ci} |")
    return "\n".join(lines) + "\n"
