"""Compare freshly regenerated tables with the committed ones, cell by cell.

    python -m pipeline.tools.verify [--reference reports/<profile>] [--scale 1.0]
    make verify          # dvc repro, then this (for another profile: make preset P=... first)

What "reproduced" means: on the same hardware and software every cell is bit-identical
(difference 0). On another CPU (other SIMD kernels: AVX-512, AMX) or another torch build,
floating-point sums differ in their last bits, training trajectories diverge, and each run
lands elsewhere *within seed noise*. So this prints, per metric, the largest difference and
where it is, against a tolerance of the order of the seed-to-seed spread; ``--scale`` widens
or narrows all tolerances. Exit status 1 when a metric is outside its tolerance or a row is
missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pipeline.core.paths import REPORTS, TABLES
from pipeline.tools.report import profile_of

# largest difference still "within seed noise", by column prefix (table units)
TOLERANCES = {"test_acc": 2.0, "test_top5": 1.0, "d_acc": 2.0, "test_nll": 0.1,
              "test_ece": 0.03, "rank_corr": 0.15, "sd_diff": 2.0, "eq_ci": 2.0, "mde": 4.0}
# derived from the columns above, not compared on their own (a p-value moves a lot with
# a small shift of a mean); verdict words are not keys either, they may change with it
DERIVED = {"p", "p_holm", "seeds_to_decide"}
WORDS = {"verdict", "missing_seeds", "holds", "survives_holm"}


def tolerance(column: str) -> float:
    for prefix, tol in TOLERANCES.items():
        if column.startswith(prefix):
            return tol
    return 0.0  # counts (seeds, paired_seeds) must match exactly


def compare(reference: Path, fresh: Path, scale: float = 1.0) -> tuple[list[dict], list[str]]:
    """One row per (table, metric): largest |fresh - reference|, where, and its tolerance."""
    rows, problems = [], []
    for ref_path in sorted((reference / "tables").glob("*.csv")):
        new_path = fresh / ref_path.name
        if not new_path.is_file():
            problems.append(f"{new_path}: missing (the reference has it)")
            continue
        ref, new = pd.read_csv(ref_path), pd.read_csv(new_path)
        keys = [c for c in ref.columns if not pd.api.types.is_numeric_dtype(ref[c])
                and c in new.columns and c not in WORDS]
        if "seed" in ref.columns:
            keys.append("seed")
        merged = ref.merge(new, on=keys, how="left", suffixes=("_ref", "_new"), indicator=True)
        for _, row in merged[merged["_merge"] != "both"].iterrows():
            problems.append(f"{new_path}: no row {dict(row[keys])}")
        numeric = [c for c in ref.columns if c not in keys and c not in DERIVED
                   and pd.api.types.is_numeric_dtype(ref[c])]
        for column in numeric:
            diff = (merged[f"{column}_new"] - merged[f"{column}_ref"]).abs()
            if diff.isna().all():
                continue
            where = int(diff.fillna(-1).idxmax())
            tol = tolerance(column) * scale
            rows.append({"table": ref_path.stem, "metric": column,
                         "max_diff": float(diff.max()),
                         "at": " / ".join(str(merged.loc[where, k]) for k in keys),
                         "tolerance": tol, "ok": bool(diff.max() <= tol)})
    return rows, problems


def version_changes(provenance: Path) -> list[str]:
    """What differs from the machine the reference ran on: the packages that decide the
    numbers (``versions``, from ``requirements.lock``'s environment) and torch's CPU kernel
    set (``cpu_capability``). Either means cells are not expected to be bit-identical."""
    import json

    from pipeline.tools.report import cpu, installed_versions

    try:
        recorded = json.loads(provenance.read_text())
    except (OSError, ValueError):
        return [f"{provenance}: unreadable; package versions not compared"]
    changes = []
    versions = recorded.get("versions", {})
    if not versions:
        changes.append(f"{provenance}: no package versions recorded (an older report)")
    now = installed_versions()
    changes += [f"{name} {now.get(name, 'not installed')} here, {version} in the reference: "
                "differences beyond the last bits are expected"
                for name, version in versions.items() if now.get(name) != version]
    kernels = recorded.get("cpu_capability")
    here = cpu()
    if kernels is None:
        changes.append(f"{provenance}: no CPU recorded (an older report); this machine: "
                       f"{here['cpu']}, torch {here['cpu_capability']} kernels")
    elif kernels != here["cpu_capability"]:
        changes.append(f"torch {here['cpu_capability']} kernels here, {kernels} in the reference "
                       f"({recorded.get('cpu', '?')}): runs land elsewhere within seed noise")
    return changes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", type=Path, default=None,
                        help="committed reports folder (default: reports/<params profile>)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every tolerance")
    args = parser.parse_args(argv)
    reference = args.reference or REPORTS / profile_of()
    if not (reference / "tables").is_dir():
        print(f"error: {reference}/tables not found: no committed results for this profile",
              file=sys.stderr)
        return 2
    for line in version_changes(reference / "provenance.json"):
        print(f"[verify] {line}")
    rows, problems = compare(reference, TABLES, args.scale)
    if not rows and not problems:
        print(f"error: nothing to compare in {reference}/tables", file=sys.stderr)
        return 2
    table = pd.DataFrame(rows)
    worst = table.loc[table.groupby("metric")["max_diff"].idxmax()].sort_values("metric")
    print(f"[verify] {TABLES} against {reference} ({len(table)} table columns compared)")
    print(worst.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    identical = bool((table["max_diff"] == 0).all())
    for line in problems:
        print(f"[verify] {line}")
    bad = table[~table["ok"]]
    if identical and not problems:
        print("[verify] every cell is bit-identical to the committed tables")
    elif bad.empty and not problems:
        print("[verify] every cell within its tolerance (seed noise), not bit-identical")
    else:
        print(f"[verify] {len(bad)} column(s) outside tolerance, {len(problems)} problem(s)")
    return 0 if bad.empty and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
