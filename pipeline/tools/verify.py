"""Judge freshly regenerated tables against the committed ones by what seed noise can produce.

    python -m pipeline.tools.verify [--reference reports/<profile>] [--alpha 0.05]
    make verify          # dvc repro, then this (for another profile: make preset P=... first)

Two cases, decided from the reference's provenance (docs/reproducibility.md):

- **bit-identity due**: the same torch CPU kernel set and the same package versions as the
  reference. Every cell, numbers and words, must be identical.
- **seed noise**: another kernel set (AVX2 vs AVX-512 round sums differently) or other
  versions. Training trajectories diverge and each run lands elsewhere within seed noise.
  Each row's mean of each metric is compared with the reference's by Welch's t-test from
  the two reports' mean, sd and number of seeds; the family of compared cells is corrected
  by Holm, so a rerun drawn from the reference's own distribution fails with probability
  at most ``--alpha``. Derived columns (paired differences, intervals, MDEs, p-values,
  verdicts) are not compared with fixed numbers: they are recomputed from their row's
  mean and sd and must follow from them. Verdicts that moved are listed, each with
  whether its difference moved within noise.

Exit status 1 when a mean shifted beyond noise, a derived cell does not follow from its
row, a row is missing, or (bit-identity due) any cell differs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from scipy import stats

from pipeline.core.paths import REPORTS, TABLES
from pipeline.results.decide import holm
from pipeline.tools.report import profile_of

METRICS = ("test_acc", "test_top5", "test_nll", "test_ece")
ROW_KEYS = ("stage", "name")  # a table row's run; the same run appears in several tables
CLAIM_KEYS = ("claim", "recipe")
EXACT = 1e-9  # relative: "follows from its row" up to the csv's rounding


@dataclass
class Judgement:
    """What verify found: the case it judged, the compared means, and every problem."""

    identical_due: bool
    reasons: list[str] = field(default_factory=list)  # why not bit-identical
    means: pd.DataFrame = field(default_factory=pd.DataFrame)
    problems: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_csv(p) for p in sorted(folder.glob("*.csv"))}


def row_stats(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One record per (stage, name, metric): mean, sd and seeds, each run once."""
    records = {}
    for df in tables.values():
        if not set(ROW_KEYS) <= set(df.columns) or "seeds" not in df.columns:
            continue
        for _, row in df.iterrows():
            for metric in METRICS:
                if f"{metric}_mean" in df.columns and pd.notna(row[f"{metric}_mean"]):
                    records[(row["stage"], row["name"], metric)] = {
                        "mean": float(row[f"{metric}_mean"]),
                        "sd": float(row[f"{metric}_std"]), "n": int(row["seeds"])}
    index = pd.MultiIndex.from_tuples(list(records), names=[*ROW_KEYS, "metric"])
    return pd.DataFrame(list(records.values()), index=index)


def welch_p(m1: float, s1: float, n1: int, m2: float, s2: float, n2: int) -> float:
    """Two-sided Welch test of equal means from summary statistics (NaN when untestable).
    Both spreads zero: the means either agree (p = 1) or cannot be noise (p = 0)."""
    if n1 < 2 or n2 < 2 or not all(map(math.isfinite, (m1, s1, m2, s2))):
        return math.nan
    if s1 == 0 and s2 == 0:
        return 1.0 if m1 == m2 else 0.0
    return float(stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue)


def compare_means(reference: pd.DataFrame, fresh: pd.DataFrame,
                  alpha: float) -> tuple[pd.DataFrame, list[str]]:
    """Each reference cell's mean against the fresh one's, Holm-corrected over the family."""
    problems = [f"no fresh row for {' / '.join(map(str, k))}"
                for k in reference.index.difference(fresh.index)]
    both = reference.merge(fresh, how="inner", left_index=True, right_index=True,
                           suffixes=("_ref", "_new"))
    both["diff"] = both["mean_new"] - both["mean_ref"]
    both["p"] = [welch_p(r.mean_ref, r.sd_ref, r.n_ref, r.mean_new, r.sd_new, r.n_new)
                 for r in both.itertuples()]
    both["p_holm"] = holm(both["p"].tolist())
    both["shifted"] = both["p_holm"] < alpha
    for key, row in both[both["shifted"]].iterrows():
        problems.append(f"{' / '.join(map(str, key))}: mean {row.mean_new:.4g} vs "
                        f"{row.mean_ref:.4g} (sd {row.sd_new:.3g} / {row.sd_ref:.3g}, "
                        f"n {row.n_new} / {row.n_ref}): beyond seed noise "
                        f"(Holm p {row.p_holm:.2g})")
    return both, problems


def _close(a: float, b: float) -> bool:
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.isfinite(a) == math.isfinite(b)
    return abs(a - b) <= EXACT * max(1.0, abs(a), abs(b))


def derived_problems(tables: dict[str, pd.DataFrame]) -> list[str]:
    """Derived cells that do not follow from their row: each claim re-decided from its
    paired seeds, mean difference and sd; each table's difference to its reference row
    equal to the difference of their means when every seed is paired."""
    from pipeline.results.claims import _p_of
    from pipeline.results.decide import decide_summary

    problems = []
    claims = tables.get("claims")
    if claims is not None:
        for _, row in claims[claims["paired_seeds"].notna()].iterrows():
            n, sd = int(row["paired_seeds"]), float(row["sd_diff"])
            d = decide_summary(n, float(row["d_acc"]), sd, float(row["margin"]),
                               float(row["alpha"]))
            paper = row["paper"] if isinstance(row["paper"], str) else ""
            expect = {"d_acc_ci_low": d.low, "d_acc_ci_high": d.high, "eq_ci_low": d.eq_low,
                      "eq_ci_high": d.eq_high, "mde": d.mde, "p": _p_of(paper, d)}
            for column, value in expect.items():
                if column in row and not _close(float(row[column]), value):
                    problems.append(f"claims / {row['claim']} / {row['recipe']}: {column} "
                                    f"{row[column]} does not follow from d {row['d_acc']}, "
                                    f"sd {sd}, n {n} ({value})")
    for name, df in tables.items():
        if not {"d_acc_vs_ce", "verdict", "test_acc_mean"} <= set(df.columns):
            continue
        ref = df[df["verdict"] == "reference"]
        if len(ref) != 1:
            continue
        base = float(ref["test_acc_mean"].iloc[0])
        full = df[(df["paired_seeds"] == df["seeds"]) & (df["seeds"] == ref["seeds"].iloc[0])]
        for _, row in full.iterrows():
            if not _close(float(row["d_acc_vs_ce"]), float(row["test_acc_mean"]) - base):
                problems.append(f"{name} / {row['name']}: d_acc_vs_ce {row['d_acc_vs_ce']} "
                                f"is not its mean minus the reference's")
    return problems


def moved_verdicts(reference: dict[str, pd.DataFrame], fresh: dict[str, pd.DataFrame],
                   alpha: float) -> list[str]:
    """Claims whose verdict changed, each with whether its paired difference moved within
    noise (Welch on the two reports' d, sd and n)."""
    if "claims" not in reference or "claims" not in fresh:
        return []
    ref = reference["claims"].set_index(list(CLAIM_KEYS))
    new = fresh["claims"].set_index(list(CLAIM_KEYS))
    lines = []
    for key in ref.index.intersection(new.index):
        a, b = ref.loc[key], new.loc[key]
        if a["verdict"] == b["verdict"]:
            continue
        p = welch_p(a["d_acc"], a["sd_diff"], int(a["paired_seeds"]),
                    b["d_acc"], b["sd_diff"], int(b["paired_seeds"]))
        noise = "within noise" if not p < alpha else "beyond noise"
        lines.append(f"{' / '.join(key)}: {a['verdict']} -> {b['verdict']} (d {a['d_acc']:+.2f}"
                     f" -> {b['d_acc']:+.2f}, Welch p {p:.2g}: {noise})")
    return lines


def identical_problems(reference: dict[str, pd.DataFrame],
                       fresh: dict[str, pd.DataFrame]) -> list[str]:
    """Every cell, numbers and words, identical (NaN equals NaN); a missing table is
    :func:`judge`'s to report."""
    problems = []
    for name, ref in reference.items():
        new = fresh.get(name)
        if new is None:
            continue
        if list(new.columns) != list(ref.columns) or new.shape != ref.shape:
            problems.append(f"{name}.csv: other rows or columns than the reference")
        else:
            differ = ~((ref == new) | (ref.isna() & new.isna()))
            for column in ref.columns[differ.any()]:
                i = int(differ[column].values.argmax())
                problems.append(f"{name}.csv / {column} row {i}: {new[column].iloc[i]!r} "
                                f"vs {ref[column].iloc[i]!r}")
    return problems


def machine_changes(provenance: Path) -> list[str]:
    """What differs from the machine the reference ran on: the packages that decide the
    numbers (``versions``) and torch's CPU kernel set (``cpu_capability``). Empty: every
    cell is expected bit-identical."""
    from pipeline.tools.report import cpu, installed_versions

    try:
        recorded = json.loads(provenance.read_text())
    except (OSError, ValueError):
        return [f"{provenance}: unreadable; the machine is not compared"]
    changes = []
    versions = recorded.get("versions", {})
    if not versions:
        changes.append(f"{provenance}: no package versions recorded (an older report)")
    now = installed_versions()
    changes += [f"{name} {now.get(name, 'not installed')} here, {version} in the reference"
                for name, version in versions.items() if now.get(name) != version]
    kernels, here = recorded.get("cpu_capability"), cpu()
    if kernels is None:
        changes.append(f"{provenance}: no CPU recorded (an older report); this machine: "
                       f"{here['cpu']}, torch {here['cpu_capability']} kernels")
    elif kernels != here["cpu_capability"]:
        changes.append(f"torch {here['cpu_capability']} kernels here, {kernels} in the "
                       f"reference ({recorded.get('cpu', '?')})")
    return changes


def judge(reference: Path, fresh: Path, alpha: float = 0.05,
          reasons: list[str] | None = None) -> Judgement:
    """The whole check (``reasons``: why cells may differ; None reads the provenance)."""
    if reasons is None:
        reasons = machine_changes(reference / "provenance.json")
    ref_tables, new_tables = read_tables(reference / "tables"), read_tables(fresh)
    out = Judgement(identical_due=not reasons, reasons=reasons)
    out.problems += [f"{name}.csv: missing (the reference has it)"
                     for name in ref_tables if name not in new_tables]
    out.means, shifted = compare_means(row_stats(ref_tables), row_stats(new_tables), alpha)
    out.verdicts = moved_verdicts(ref_tables, new_tables, alpha)
    if out.identical_due:
        out.problems += identical_problems(ref_tables, new_tables)
    else:
        out.problems += shifted
    out.problems += derived_problems(new_tables)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, default=None,
                        help="committed reports folder (default: reports/<params profile>)")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="family error rate of the seed-noise check (default 0.05)")
    args = parser.parse_args(argv)
    reference = args.reference or REPORTS / profile_of()
    if not (reference / "tables").is_dir():
        print(f"error: {reference}/tables not found: no committed results for this profile",
              file=sys.stderr)
        return 2
    j = judge(reference, TABLES, args.alpha)
    if j.means.empty and not j.problems:
        print(f"error: nothing to compare in {reference}/tables", file=sys.stderr)
        return 2
    if j.identical_due:
        print("[verify] same torch CPU kernels and package versions as the reference: "
              "every cell must be bit-identical")
    else:
        print("[verify] judging by seed noise (cells are not expected bit-identical):")
        for line in j.reasons:
            print(f"[verify]   {line}")
    if not j.means.empty:
        worst = j.means.sort_values("p_holm").head(5).reset_index()
        print(f"[verify] {TABLES} against {reference}: {len(j.means)} means compared "
              f"(Welch, Holm over the family, alpha {args.alpha}); the closest calls:")
        print(worst[["stage", "name", "metric", "mean_ref", "mean_new", "diff", "p",
                     "p_holm"]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for line in j.verdicts:
        print(f"[verify] verdict moved: {line}")
    for line in j.problems:
        print(f"[verify] {line}")
    if j.ok:
        identical = bool((j.means["diff"] == 0).all()) if not j.means.empty else True
        print("[verify] every cell is bit-identical to the committed tables" if identical else
              "[verify] every mean within seed noise, every derived cell follows from its row")
        return 0
    print(f"[verify] {len(j.problems)} problem(s)")
    return 1


if __name__ == "__main__":
    sys.exit(main())
