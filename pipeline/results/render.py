"""The tables as markdown: plain pipe tables that read well in a terminal and render on a
code host."""

from __future__ import annotations

import math

import pandas as pd

from pipeline.results.design import LABELS, METRICS


def _pm(mean: float, std: float, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "—"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(df: pd.DataFrame, title: str) -> str:
    """A plain pipe table that reads well in a terminal and renders on a code host."""
    cols = [k for k in METRICS if f"{k}_mean" in df]
    digits = {"test_acc": 2, "test_top5": 2, "test_nll": 3, "test_ece": 3}
    reference = df.loc[df["verdict"] == "reference", "method"]
    ref = reference.iloc[0] if len(reference) else "CE"
    level = 100 * (1 - float(df["alpha"].iloc[0])) if "alpha" in df else 95
    header = ["method", "seeds", *[LABELS[k] for k in cols],
              f"Δ top-1 vs {ref} [{level:.4g}% CI]", "verdict"]
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for _, r in df.iterrows():
        seeds = f"{r['seeds']}" + (f" (missing: {r['missing_seeds']})" if r["missing_seeds"] else "")
        cells = [r["method"], seeds]
        cells += [_pm(r.get(f"{k}_mean"), r.get(f"{k}_std"), digits[k]) for k in cols]
        if r["verdict"] == "reference":
            cells.append("—")
        elif math.isnan(r["d_acc_vs_ce"]):
            cells.append("n/a")
        elif math.isnan(r["d_acc_ci_low"]):
            cells.append(f"{r['d_acc_vs_ce']:+.2f}")
        else:
            cells.append(f"{r['d_acc_vs_ce']:+.2f} [{r['d_acc_ci_low']:+.2f}, "
                         f"{r['d_acc_ci_high']:+.2f}]")
        cells.append(str(r["verdict"]))
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def similarity_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return ""
    lines = ["**IL's class similarity vs the teacher's** (Spearman rank correlation of the "
             "off-diagonal entries, test split)", "", "| IL variant | seeds | rank correlation |",
             "|---|---|---|"]
    for variant, group in df.groupby("variant", sort=False):
        values = group["rank_corr_teacher"]
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        lines.append(f"| {variant} | {len(values)} | {values.mean():.2f} ± {std:.2f} |")
    return "\n".join(lines) + "\n"
