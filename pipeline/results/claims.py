"""The paper's claims as paired comparisons, each decided by :mod:`pipeline.results.decide`.

C1 KD works through both the non-GT mass and the class similarity (KD full > its uniform
and shuffled controls); C2 IL beats standard training and regularizers (IL > CE, LS, CP);
C3 IL is competitive with peers and a teacher (IL ≈ DML, IL ≈ KD); and our T4 question,
IL full > its controls. An "≈" claim holds only as *equivalent* within ``claims.margin``;
"no difference detected" is never support. The comparisons with the self-distillation
peers (PS-KD, CS-KD, online LS, Tf-KD) are reported and decided, but no claim of the
paper rides on them. The claims are one family: Holm-adjusted p-values stand beside the
raw ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.core.config import Params
from pipeline.methods import PAPER, REGISTRY, VARIANT_LABELS
from pipeline.results.aggregate import Lookup, file_lookup, load_runs
from pipeline.results.decide import Decision, decide, holm
from pipeline.results.design import Row, default_row


@dataclass(frozen=True)
class Claim:
    """"``a`` vs ``b``" as the paper states it: ``paper`` is "better" (a > b), "similar"
    (a ≈ b) or "" (beyond the paper: reported, not judged)."""

    text: str
    a: Row
    b: Row
    paper: str = "better"


def look_alpha(params: Params) -> float:
    """This look's two-sided error rate: ``1 - claims.level`` split over the planned looks."""
    return (1 - params.claims.level) / len(params.claims.looks)


def claims(params: Params) -> list[tuple[str, Claim]]:
    """``(recipe, claim)`` for every claim whose rows this params file runs: the method
    comparisons with the default recipes and with the tuned ones, the component ablations
    (T1, T4) with the default recipe."""
    tuned = set(params.tune.all_methods) if params.tune.enabled else set()
    # IL against every method that names its claim, the paper's claims first (registry:
    # each method's module says what the paper claims of IL against it)
    methods = sorted(((info.claim, name, info.paper) for name, info in REGISTRY.items()
                      if info.claim), key=lambda m: (PAPER.index(m[2]), REGISTRY[m[1]].rank))
    out: list[tuple[str, Claim]] = []
    il = default_row("introspective", params)
    for short, method, paper in methods:
        other = default_row(method, params)
        sign = ">" if paper == "better" else "≈" if paper == "similar" else "vs"
        if il is not None and other is not None:
            out.append(("default", Claim(f"IL {sign} {short}", il, other, paper)))
        if {"introspective", method} <= tuned:
            out.append(("tuned", Claim(f"IL {sign} {short}", Row("IL (tuned)", "tuned",
                                                                 "introspective"),
                                       Row(f"{short} (tuned)", "tuned", method), paper)))
    for stage, method, variants in (("kd_ablation", "kd", params.kd_ablation.variants),
                                    ("introspective", "introspective",
                                     params.introspective_ablation.variants)):
        short = REGISTRY[method].short
        if "full" not in variants:
            continue
        for control in ("uniform_non_gt", "shuffled_non_gt"):
            if control in variants:
                out.append(("default", Claim(
                    f"{short} full > {short} {VARIANT_LABELS[control]}",
                    Row(f"{short} full", stage, "full"), Row(control, stage, control))))
    return out


def holds(paper: str, found: Decision) -> str:
    """Whether this profile supports the paper's claim, in the words of design §7."""
    if not paper:
        return "—"
    if found.outcome == "undecided":
        return "undecided"
    if paper == "better":
        return {"above": "holds, ≥ margin" if found.above_margin else "holds",
                "below": "opposite", "equivalent": "no: equivalent"}[found.outcome]
    return {"equivalent": "holds (equivalent)", "above": "no: A > B",
            "below": "no: A < B"}[found.outcome]


def _p_of(paper: str, found: Decision) -> float:
    """The p-value behind the verdict: TOST's for an equivalence (or an undecided "≈"
    claim), the paired t-test's otherwise."""
    equivalence = found.outcome == "equivalent" or (found.outcome == "undecided"
                                                    and paper == "similar")
    return found.p_equiv if equivalence else found.p_diff


def record(claim: str, recipe: str, paper: str, found: Decision) -> dict:
    """One row of the claims table (``paper``: "better", "similar" or "")."""
    needed = found.n_equiv if paper == "similar" else found.n_diff
    return {"claim": claim, "recipe": recipe, "paper": paper or "—", "paired_seeds": found.n,
            "d_acc": found.mean, "sd_diff": found.sd, "d_acc_ci_low": found.low,
            "d_acc_ci_high": found.high, "eq_ci_low": found.eq_low, "eq_ci_high": found.eq_high,
            "verdict": found.label(), "holds": holds(paper, found), "margin": found.margin,
            "alpha": found.alpha, "mde": found.mde,
            "seeds_to_decide": math.nan if needed is None else needed,
            "p": _p_of(paper, found)}


def with_holm(df: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Holm-adjusted p-values over the paper's claims (one family), and whether each
    decided verdict survives them at this look's ``alpha``."""
    if df.empty:
        return df
    judged = df["paper"] != "—"
    df["p_holm"] = math.nan
    df.loc[judged, "p_holm"] = holm(df.loc[judged, "p"].tolist())
    decided = ~df["verdict"].str.startswith("undecided")
    df["survives_holm"] = [
        "—" if not (j and d) else "yes" if p <= alpha else "no"
        for j, d, p in zip(judged, decided, df["p_holm"], strict=True)]
    return df


def claim_rows(params: Params, source: Path | Lookup, seeds: Sequence[int]) -> pd.DataFrame:
    """Each claim's paired top-1 difference (A - B) with its interval at this look's level,
    the verdict, what would decide it, and raw and Holm-adjusted p-values."""
    results = file_lookup(source) if isinstance(source, Path) else source
    margin, alpha = params.claims.margin, look_alpha(params)
    records = []
    for recipe, claim in claims(params):
        a, b = load_runs(results, claim.a, seeds), load_runs(results, claim.b, seeds)
        pairs = [a[s]["test_acc"] - b[s]["test_acc"] for s in seeds
                 if a.get(s) is not None and b.get(s) is not None]
        records.append(record(claim.text, recipe, claim.paper, decide(pairs, margin, alpha)))
    return with_holm(pd.DataFrame.from_records(records), alpha)


def _num(value: float, fmt: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, fmt)


def _needed(row: pd.Series) -> str:
    if not row["verdict"].startswith("undecided"):
        return "—"
    if math.isnan(row["seeds_to_decide"]):
        return "—" if math.isnan(row["sd_diff"]) else "> 10000"
    return str(int(row["seeds_to_decide"]))


def claims_markdown(df: pd.DataFrame, looks: Sequence[int] = ()) -> str:
    """The claims table and the rules it follows, for ``all_tables.md`` (and so the docs)."""
    alpha, margin = float(df["alpha"].iloc[0]), float(df["margin"].iloc[0])
    level = 1 - alpha
    n = int(df["paired_seeds"].max())
    lines = [f"**Claims — paired by seed: top-1 of A minus B, {100 * level:.4g}% t-interval; "
             f"margin ±{margin:g} pt**", "",
             "| claim (A vs B) | recipe | pairs | Δ top-1 [CI] | verdict | paper | holds here? "
             "| MDE | seeds to decide | p | p (Holm) | survives Holm |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        delta = "n/a" if math.isnan(r["d_acc"]) else (
            f"{r['d_acc']:+.2f}" if math.isnan(r["d_acc_ci_low"]) else
            f"{r['d_acc']:+.2f} [{r['d_acc_ci_low']:+.2f}, {r['d_acc_ci_high']:+.2f}]")
        paper = {"better": "A > B", "similar": "A ≈ B"}.get(r["paper"], "—")
        lines.append(f"| {r['claim']} | {r['recipe']} | {r['paired_seeds']} | {delta} | "
                     f"{r['verdict']} | {paper} | {r['holds']} | {_num(r['mde'], '.2f')} | "
                     f"{_needed(r)} | {_num(r['p'], '.3f')} | {_num(r['p_holm'], '.3f')} | "
                     f"{r['survives_holm']} |")
    plan = ", ".join(map(str, looks)) or "?"
    lines += ["", f"Verdicts (`pipeline/results/decide.py`): **A > B** / **A < B** when the "
              f"{100 * level:.4g}% interval excludes 0 (\"≥ {margin:g}\" when it excludes the "
              f"margin too); **equivalent (±{margin:g})** when the {100 * (1 - 2 * alpha):.4g}% "
              f"interval lies inside ±{margin:g} (TOST); otherwise **undecided**. An ≈ claim "
              "holds only as equivalent. MDE: the difference this many pairs detect with 80% "
              "power at the observed spread. Seeds to decide: pairs for 80% power to detect a "
              f"{margin:g}-pt difference (an ≈ claim: to show equivalence when the true "
              f"difference is 0). The level is 1 − α/K over the K planned looks (seeds: {plan}; "
              f"this look: {n} pairs), so looking again as planned keeps the overall error at "
              f"α = {(1 - level) * max(1, len(looks)):.2g}. Holm adjusts the paper's claims as "
              "one family; \"survives\" means the adjusted p stays under this look's α."]
    if looks and n not in looks:
        lines.append(f"\n**This look ({n} pairs) is not one of the planned looks ({plan}).**")
    return "\n".join(lines) + "\n"
