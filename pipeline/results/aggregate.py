"""The paper's tables from the training stages' ``metrics.json`` files.

DVC outputs are the source of truth (they exist even when a stage was restored
from the run-cache and no new MLflow run was made). Each table row is one
method/variant: mean ± std over seeds, and the difference to CE *paired by seed*
with a 95% t-interval. A seed whose run is missing or failed is listed as
missing, never silently averaged; the paired difference uses only seeds both
rows have.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.core.config import Params
from pipeline.core.runs import RunSpec
from pipeline.methods import REGISTRY, VARIANT_LABELS

METRICS = ("test_acc", "test_top5", "test_nll", "test_ece")
LABELS = {"test_acc": "top-1 (%)", "test_top5": "top-5 (%)", "test_nll": "NLL",
          "test_ece": "ECE"}


@dataclass(frozen=True)
class Row:
    label: str
    stage: str
    name: str  # method (baselines) or variant (kd_ablation, introspective)

    def spec(self, seed: int) -> RunSpec:
        """The run behind this row for ``seed`` (its folder and MLflow run name)."""
        return RunSpec.of(self.stage, self.name, seed)


CE_ROW = Row("CE", "baselines", "ce")
TUNED_CE_ROW = Row("CE (tuned)", "tuned", "ce")


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    rows: tuple[Row, ...]
    reference: Row = CE_ROW  # paired differences are taken to this row


def default_row(method: str, params: Params) -> Row | None:
    """Where the default-recipe run of ``method`` lives (None when it is not configured).

    KD and IL have no ``baselines`` instance: their ``full`` variant is that run.
    """
    info = REGISTRY[method]
    if method == "kd":
        stage, name, variants = "kd_ablation", "full", params.kd_ablation.variants
    elif method == "introspective":
        stage, name, variants = "introspective", "full", params.introspective_ablation.variants
    else:
        stage, name, variants = "baselines", method, ["full"] if method in \
            params.baselines.methods else []
    return Row(info.label, stage, name) if "full" in variants else None


def tables(params: Params) -> list[Table]:
    """T1-T4 (README, "Tables"), restricted to what ``params.yaml`` configures to run."""
    tuned = set(params.tune.all_methods) if params.tune.enabled else set()

    def b(method: str) -> list[Row]:
        """The default-recipe row and, when tuning is on, the tuned row of a method."""
        row = default_row(method, params)
        rows = [row] if row else []
        if method in tuned:
            rows.append(Row(f"{REGISTRY[method].label} (tuned)", "tuned", method))
        return rows

    def compared(table: str) -> list[str]:
        """The registry's methods of a table, in registry order (CE and IL frame every table)."""
        return [m for m, info in REGISTRY.items()
                if info.table == table and m not in ("ce", "introspective")]

    reference = TUNED_CE_ROW if "ce" in tuned else CE_ROW
    ce = [CE_ROW] if "ce" in params.baselines.methods else []  # T1 and T4: untuned recipes
    kd, il = REGISTRY["kd"], REGISTRY["introspective"]
    return [
        Table("T1_kd_components", "T1 — which part of the teacher's output makes KD work",
              (*ce, *[Row(kd.variant_label(v), "kd_ablation", v)
                      for v in params.kd_ablation.variants])),
        Table("T2_regularizers", "T2 — IL vs regularizers",
              (*b("ce"), *[r for m in compared("T2") for r in b(m)], *b("introspective")),
              reference),
        Table("T3_peers_teachers", "T3 — IL vs learning from peers (DML) and a teacher (KD)",
              (*b("ce"), *[r for m in compared("T3") for r in b(m)], *b("introspective")),
              reference),
        Table("T4_introspective_components", "T4 — does IL's gain come from class similarity?",
              (*ce, *[Row(il.variant_label(v), "introspective", v)
                      for v in params.introspective_ablation.variants])),
    ]


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


def paired_ci(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of paired differences and its two-sided t-interval (nan bounds for n < 2)."""
    d = np.asarray(diffs, dtype=float)
    if len(d) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(d.mean())
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return mean, mean - half, mean + half


MIN_SEEDS_FOR_VERDICT = 3


def verdict(low: float, high: float, n: int) -> str:
    """Only an interval from at least 3 paired seeds supports a claim (with 2 seeds and
    discrete accuracies a zero-spread pair gives a zero-width, meaningless interval)."""
    if n < MIN_SEEDS_FOR_VERDICT:
        return f"too few seeds ({n} < {MIN_SEEDS_FOR_VERDICT})"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no clear difference"


def summarize(table: Table, source: Path | Lookup, seeds: Sequence[int]) -> pd.DataFrame:
    """One row per table row; ``source`` is a results folder or a :data:`Lookup`."""
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
        mean, low, high = paired_ci(pairs)
        is_ce = row == table.reference
        record.update(d_acc_vs_ce=mean, d_acc_ci_low=low, d_acc_ci_high=high,
                      paired_seeds=len(pairs),
                      verdict="reference" if is_ce else verdict(low, high, len(pairs)))
        records.append(record)
    return pd.DataFrame.from_records(records)


@dataclass(frozen=True)
class Claim:
    """"``a`` vs ``b``" as the paper states it: ``paper`` is "better" (a > b), "similar"
    (a ≈ b) or "" (beyond the paper: reported, not judged)."""

    text: str
    a: Row
    b: Row
    paper: str = "better"


def claims(params: Params) -> list[tuple[str, Claim]]:
    """``(recipe, claim)`` for every claim whose rows this params file runs: the method
    comparisons with the default recipes and with the tuned ones, the component ablations
    (T1, T4) with the default recipe."""
    tuned = set(params.tune.all_methods) if params.tune.enabled else set()
    methods = [("CE", "ce", "better"), ("LS", "label_smoothing", "better"),
               ("CP", "confidence_penalty", "better"), ("KD", "kd", "similar"),
               ("DML", "dml", "similar"), ("PS-KD", "ps_kd", ""), ("CS-KD", "cs_kd", ""),
               ("online LS", "online_label_smoothing", ""), ("Tf-KD", "tf_kd_virtual", "")]
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


def claim_rows(params: Params, source: Path | Lookup, seeds: Sequence[int]) -> pd.DataFrame:
    """Each claim's paired top-1 difference (a - b) with its 95% t-interval and whether this
    profile supports it."""
    results = file_lookup(source) if isinstance(source, Path) else source
    records = []
    for recipe, claim in claims(params):
        a, b = load_runs(results, claim.a, seeds), load_runs(results, claim.b, seeds)
        pairs = [a[s]["test_acc"] - b[s]["test_acc"] for s in seeds
                 if a.get(s) is not None and b.get(s) is not None]
        mean, low, high = paired_ci(pairs)
        found = verdict(low, high, len(pairs))
        if found.startswith("too few"):
            holds = "undecided"
        elif claim.paper == "better":
            holds = {"better": "yes", "worse": "no: the opposite"}.get(found, "not shown")
        elif claim.paper == "similar":
            holds = "consistent" if found == "no clear difference" else f"no: A {found}"
        else:
            holds = "—"
        records.append({"claim": claim.text, "recipe": recipe, "paper": claim.paper or "—",
                        "paired_seeds": len(pairs), "d_acc": mean, "d_acc_ci_low": low,
                        "d_acc_ci_high": high, "verdict": found, "holds": holds})
    return pd.DataFrame.from_records(records)


def claims_markdown(df: pd.DataFrame) -> str:
    lines = ["**Claims — each comparison paired by seed (top-1 of A minus B, 95% t-interval)**",
             "", "| claim (A vs B) | recipe | seeds | Δ top-1 [95% CI] | verdict | paper | "
             "holds here? |", "|---|---|---|---|---|---|---|"]
    for _, r in df.iterrows():
        delta = "n/a" if math.isnan(r["d_acc"]) else (
            f"{r['d_acc']:+.2f}" if math.isnan(r["d_acc_ci_low"]) else
            f"{r['d_acc']:+.2f} [{r['d_acc_ci_low']:+.2f}, {r['d_acc_ci_high']:+.2f}]")
        paper = {"better": "A > B", "similar": "A ≈ B"}.get(r["paper"], "—")
        lines.append(f"| {r['claim']} | {r['recipe']} | {r['paired_seeds']} | {delta} | "
                     f"{r['verdict']} | {paper} | {r['holds']} |")
    lines += ["", "\"not shown\": the interval includes 0 — this profile cannot tell the two "
              "apart, which is not evidence that they are equal; \"consistent\" for an ≈ "
              "claim means only that no difference was detected."]
    return "\n".join(lines) + "\n"


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
    header = ["method", "seeds", *[LABELS[k] for k in cols], f"Δ top-1 vs {ref} [95% CI]",
              "verdict"]
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
    counts = np.sum([p["count"] for p in parts], axis=0)
    safe = np.maximum(counts, 1)
    pooled = {"lower": parts[0]["lower"], "upper": parts[0]["upper"], "count": counts.tolist()}
    for key in ("accuracy", "confidence"):
        weighted = np.sum([np.asarray(p[key]) * np.asarray(p["count"]) for p in parts], axis=0)
        pooled[key] = (weighted / safe).tolist()
    gap = np.abs(np.asarray(pooled["accuracy"]) - np.asarray(pooled["confidence"]))
    pooled["ece"] = float((gap * counts).sum() / max(counts.sum(), 1))
    return pooled


def teacher_line(results: Path, reference: Row, seeds: Sequence[int]) -> str:
    """The teacher's test accuracy beside the CE student's, with a warning when it is no
    better (then T1 and T3 distil a teacher that knows less than its student)."""
    try:
        teacher = json.loads((results / "teacher" / "metrics.json").read_text())["test_acc"]
    except (OSError, KeyError, json.JSONDecodeError):
        return ""
    runs = [m for m in load_runs(file_lookup(results), reference, seeds).values() if m]
    if not runs:
        return f"Teacher: test top-1 {teacher:.2f}%.\n"
    student = float(np.mean([m["test_acc"] for m in runs]))
    line = (f"Teacher: test top-1 {teacher:.2f}%; {reference.label} student: {student:.2f}% "
            f"(mean of {len(runs)} seeds).")
    if teacher <= student:
        line = f"**Warning: the teacher is not better than its student.** {line}"
    return line + "\n"


def similarity_rows(results: Path, params: Params,
                    teacher: np.ndarray | None) -> pd.DataFrame:
    """Per IL run: Spearman rank correlation (off-diagonal) of its class similarity with the
    teacher's mean softmax, both on the test split."""
    from pipeline.methods.analysis import off_diagonal
    from pipeline.train.report import read_matrix

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


def write_all(params: Params, results: Path, tables_dir: Path, figures_dir: Path,
              teacher_similarity: np.ndarray | None = None) -> list[Path]:
    """Write every table (csv + md) and figure; return the written paths.

    ``teacher_similarity``: the teacher's mean softmax per true class on the test split
    (the stage computes it from ``models/teacher``), compared with IL's own similarity.
    """
    from pipeline.core.io import atomic_write_text
    from pipeline.results.figures import accuracy_bars, accuracy_curves, reliability_diagrams
    from pipeline.train.report import read_matrix, save_figure, similarity_heatmaps

    seeds = params.seeds
    written: list[Path] = []
    all_tables = tables(params)
    markdown = [teacher_line(results, all_tables[0].reference, seeds)]
    for table in all_tables:
        df = summarize(table, results, seeds)
        csv, md = tables_dir / f"{table.key}.csv", tables_dir / f"{table.key}.md"
        atomic_write_text(csv, df.to_csv(index=False))
        text = to_markdown(df, table.title)
        atomic_write_text(md, text)
        markdown.append(text)
        fig = figures_dir / f"{table.key}_accuracy.png"
        save_figure(accuracy_bars(df, table.title), fig)
        curves = figures_dir / f"{table.key}_curves.png"
        save_figure(accuracy_curves({r.label: histories(results, r, seeds) for r in table.rows},
                                    table.title + " — test accuracy per epoch"), curves)
        written += [csv, md, fig, curves]
    extra = (("claims", claim_rows(params, results, seeds), claims_markdown),
             ("similarity_vs_teacher", similarity_rows(results, params, teacher_similarity),
              similarity_markdown))
    for name, df, render in extra:  # CSV + a section of all_tables.md, when it has rows
        if not df.empty:
            csv = tables_dir / f"{name}.csv"
            atomic_write_text(csv, df.to_csv(index=False))
            markdown.append(render(df))
            written.append(csv)
    all_md = tables_dir / "all_tables.md"
    atomic_write_text(all_md, "\n".join(m for m in markdown if m))
    written.append(all_md)

    candidates = [r for r in (CE_ROW, default_row("label_smoothing", params),
                              default_row("kd", params), default_row("introspective", params))
                  if r is not None]
    bins = {r.label: b for r in candidates if (b := pooled_reliability(results, r, seeds))}
    if bins:
        path = figures_dir / "reliability.png"
        save_figure(reliability_diagrams(bins), path)
        written.append(path)

    il_files = [results / RunSpec.of("introspective", "full", s).relative
                for s in seeds]
    il = [read_matrix(f / "similarity.csv") for f in il_files if (f / "similarity.csv").is_file()]
    if il:
        from pipeline.methods.analysis import off_diagonal

        il_mean = np.mean(il, axis=0)
        rho = None
        if teacher_similarity is not None:
            rho = float(stats.spearmanr(off_diagonal(il_mean),
                                        off_diagonal(teacher_similarity)).statistic)
        classes = [str(c) for c in pd.read_csv(il_files[0] / "similarity.csv", index_col=0).columns]
        path = figures_dir / "similarity_il_vs_teacher.png"
        save_figure(similarity_heatmaps(il_mean, teacher_similarity, classes, rho), path)
        written.append(path)
    return written
