"""Where each claim stands, and the next planned look: ``make decide``.

    python -m pipeline.tools.decide                          # results/tables (after dvc repro)
    python -m pipeline.tools.decide --report reports/cifar10-cpu
    python -m pipeline.tools.decide --report reports/cifar10-cpu --write

Prints per claim its verdict, the minimum detectable effect at this number of pairs and
the pairs that would decide it, then what the plan in ``claims.looks`` says to do next:
the next look's seeds (adding seeds trains only the new instances), or that the plan is
spent and the undecided claims are reported as undecided. Peeking after every added seed
inflates false positives; the plan fixes the looks, and each look's verdicts use level
``1 - alpha/K`` (docs/claims.md).

``--write`` re-decides a committed report (``reports/<profile>/``) with the current rules
from its own tables: the t-based verdicts need only each comparison's number of pairs,
mean and spread, which the tables hold (the spread recovered from the 95% interval they
recorded). Provenance records that it was re-decided, with which rules.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd
import yaml
from scipy import stats

from pipeline.core.cli import main as cli_main
from pipeline.core.config import Params, load_params, parse_params
from pipeline.core.errors import ConfigError
from pipeline.core.paths import TABLES
from pipeline.results.decide import decide_summary


def _plan(params: Params) -> tuple[list[int], float]:
    from pipeline.results.claims import look_alpha

    return params.claims.looks, look_alpha(params)


def next_look(looks: list[int], seeds: list[int], undecided: int) -> str:
    """What the plan says after this look."""
    n = len(seeds)
    if n not in looks:
        return (f"this look ({n} seeds) is not in the plan {looks}: set `seeds` to a planned "
                "look (its level was fixed for those looks)")
    later = [k for k in looks if k > n]
    if not undecided:
        return "every claim is decided: nothing more to run"
    if not later:
        return (f"the plan {looks} is spent: report the {undecided} undecided claim(s) as "
                "undecided, with the seeds each would need")
    new = list(range(max(seeds) + 1, max(seeds) + 1 + later[0] - n))
    every = ", ".join(map(str, [*seeds, *new]))
    return (f"next look: {later[0]} seeds — `dvc exp run -S 'seeds=[{every}]'` or set seeds "
            f"in params.yaml and `make repro J=2` (trains only seeds {new[0]}-{new[-1]})")


def report(claims: pd.DataFrame, params: Params) -> str:
    looks, alpha = _plan(params)
    lines = [f"claims.margin ±{params.claims.margin:g} pt, level {params.claims.level:g} over "
             f"looks {looks}: each look at {100 * (1 - alpha):.4g}%", ""]
    width = max(len(f"{c} ({r})") for c, r in zip(claims["claim"], claims["recipe"],
                                                    strict=True))
    undecided = 0
    for _, r in claims.iterrows():
        judged = r["paper"] != "—"
        open_ = str(r["verdict"]).startswith("undecided")
        undecided += judged and open_
        need = ""
        if open_:  # pandas reads the column as int64 when no claim lacks the figure
            seeds = float(r.get("seeds_to_decide", math.nan))
            need = (f"; MDE {float(r['mde']):.2f} pt, decided at ~{int(seeds)} pairs"
                    if math.isfinite(seeds) else "")
        name = f"{r['claim']} ({r['recipe']})"
        lines.append(f"  {name:<{width}}  {r['verdict']}; holds here? {r['holds']}{need}")
    lines += ["", next_look(looks, params.seeds, undecided)]
    return "\n".join(lines)


# ---- re-deciding a committed report from its own tables

def _spread(row: pd.Series, low: str, high: str, n_col: str) -> float:
    """The differences' sample sd from the t-interval a report recorded (at its ``alpha``;
    tables from before that column recorded 95%)."""
    n = int(row[n_col])
    if n < 2 or not math.isfinite(row[low]):
        return math.nan
    alpha = float(row["alpha"]) if "alpha" in row and math.isfinite(row["alpha"]) else 0.05
    half = (row[high] - row[low]) / 2
    return half * math.sqrt(n) / float(stats.t.ppf(1 - alpha / 2, n - 1))


def redecide_claims(old: pd.DataFrame, params: Params) -> pd.DataFrame:
    from pipeline.results.claims import record, with_holm

    _, alpha = _plan(params)
    rows = []
    for _, r in old.iterrows():
        sd = _spread(r, "d_acc_ci_low", "d_acc_ci_high", "paired_seeds")
        found = decide_summary(int(r["paired_seeds"]), float(r["d_acc"]), sd,
                               params.claims.margin, alpha)
        rows.append(record(r["claim"], r["recipe"], "" if r["paper"] == "—" else r["paper"],
                           found))
    return with_holm(pd.DataFrame.from_records(rows), alpha)


def redecide_table(old: pd.DataFrame, params: Params) -> pd.DataFrame:
    _, alpha = _plan(params)
    df = old.copy()
    for i, r in df.iterrows():
        if r["verdict"] == "reference":
            continue
        sd = _spread(r, "d_acc_ci_low", "d_acc_ci_high", "paired_seeds")
        found = decide_summary(int(r["paired_seeds"]), float(r["d_acc_vs_ce"]), sd,
                               params.claims.margin, alpha)
        df.loc[i, ["d_acc_ci_low", "d_acc_ci_high"]] = [found.low, found.high]
        df.loc[i, "verdict"] = found.label("better", "worse")
    df["alpha"] = alpha
    return df


def write(folder: Path, params: Params) -> None:
    """Re-decide ``folder``'s tables and claims in place and re-render its ``all_tables.md``
    through the aggregate stage's renderer."""
    from pipeline.core.io import atomic_write_text
    from pipeline.results.write import TEACHER_FILE, all_tables_markdown

    tables = folder / "tables"
    frames = {}
    for csv in sorted(tables.glob("T*.csv")):
        old = pd.read_csv(csv, dtype={"missing_seeds": "object"})
        old["missing_seeds"] = old["missing_seeds"].fillna("")
        frames[csv.stem] = redecide_table(old, params)
        atomic_write_text(csv, frames[csv.stem].to_csv(index=False))
    claims = redecide_claims(pd.read_csv(tables / "claims.csv"), params)
    atomic_write_text(tables / "claims.csv", claims.to_csv(index=False))
    similarity = tables / "similarity_vs_teacher.csv"
    teacher = tables / TEACHER_FILE
    if not teacher.is_file():  # a report older than teacher.md: its first paragraph
        first = (folder / "all_tables.md").read_text().split("\n\n", 1)[0]
        atomic_write_text(teacher, first + "\n" if first.startswith(
            ("Teacher", "**Warning")) else "")
    atomic_write_text(folder / "all_tables.md", all_tables_markdown(
        params, teacher.read_text(), frames, claims,
        pd.read_csv(similarity) if similarity.is_file() else None))
    prov_file = folder / "provenance.json"
    prov = json.loads(prov_file.read_text())
    prov["redecided"] = {"claims": params.claims.model_dump(), "how": (
        "verdicts recomputed by `python -m pipeline.tools.decide --write` from these tables' "
        "paired counts, mean differences and 95% intervals (the runs are unchanged)")}
    atomic_write_text(prov_file, json.dumps(prov, indent=2) + "\n")
    print(f"[ilkd] {folder}: tables and claims re-decided")


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", type=Path, help="a committed reports/<profile>/ folder "
                        "(default: this workspace's results/tables and params.yaml)")
    parser.add_argument("--write", action="store_true", help="with --report: re-decide its "
                        "tables in place with the current rules")
    args = parser.parse_args(argv)
    if args.write and not args.report:
        raise ConfigError("--write: name the report to re-decide with --report")
    if args.report:
        raw = yaml.safe_load((args.report / "params.yaml").read_text())
        params = parse_params(raw, str(args.report / "params.yaml"))
        claims_csv = args.report / "tables" / "claims.csv"
    else:
        params, claims_csv = load_params(), TABLES / "claims.csv"
    if args.write:
        write(args.report, params)
    if not claims_csv.is_file():
        raise ConfigError(f"{claims_csv}: not found; run `make repro` first")
    print(report(pd.read_csv(claims_csv), params))


if __name__ == "__main__":
    cli_main(entry)
