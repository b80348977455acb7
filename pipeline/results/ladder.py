"""The regime ladder: the same comparisons decided at several regimes, read side by side.

Each rung is a committed report (``reports/<profile>/``) of a preset that differs from the
others only in data and training (``presets/ladder-*.yaml``, ``cifar10-decide``). A rung's
position is its CE student's mean test accuracy; each row's Δ vs CE and its interval come
from the rung's own tables (at that rung's look level), and each claim's verdict from its
claims table, so nothing here re-decides anything.

Its figure is drawn here rather than in ``pipeline/figures.py``, which every training run
imports (for its per-run figures): a figure only this tool draws retrains nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from pipeline.results.write import TEACHER_FILE

# the rows the ladder follows: the core comparisons (T2, T3 and the two control pairs)
CORE = (("baselines", "label_smoothing"), ("baselines", "confidence_penalty"),
        ("baselines", "dml"), ("kd_ablation", "full"), ("kd_ablation", "uniform_non_gt"),
        ("kd_ablation", "shuffled_non_gt"), ("introspective", "full"),
        ("introspective", "uniform_non_gt"), ("introspective", "shuffled_non_gt"))
# the paper-cifar10 preset's regime: ResNet-20 trained with CE on all of CIFAR-10 for about
# 200 epochs reaches 91.25% test top-1 (8.75% error; He et al. 2016, Table 6)
PAPER_REGIME = (91.25, "paper-cifar10 regime: ResNet-20, full CIFAR-10 (He et al. 2016)")


def rung_rows(report: Path) -> pd.DataFrame:
    """One row per core comparison of a report: its Δ vs CE with interval and verdict, the
    rung's CE accuracy, training images per class and seeds."""
    params = _yaml(report / "params.yaml")
    frames = [pd.read_csv(p) for p in sorted((report / "tables").glob("T*.csv"))]
    if not frames:
        raise FileNotFoundError(f"{report}/tables: no T*.csv (is it a report folder?)")
    rows = pd.concat(frames).drop_duplicates(["stage", "name"])
    ce = rows[(rows["stage"] == "baselines") & (rows["name"] == "ce")]
    if ce.empty:
        raise ValueError(f"{report}: no CE row, so no position on the ladder")
    present = set(zip(rows["stage"], rows["name"], strict=True))
    core = rows.set_index(["stage", "name"]).reindex([key for key in CORE if key in present])
    out = core.reset_index()[["stage", "name", "method", "seeds", "d_acc_vs_ce",
                              "d_acc_ci_low", "d_acc_ci_high", "verdict"]]
    out.insert(0, "rung", report.name)
    out.insert(1, "ce_acc", float(ce["test_acc_mean"].iloc[0]))
    out.insert(2, "train_per_class", params["data"].get("train_per_class"))
    out.insert(3, "teacher_acc", teacher_accuracy(report))
    return out


# the line aggregate.teacher_line writes, with or without its no-better-than-student warning
TEACHER = re.compile(r"(?:\*\*Warning:[^*]*\*\* )?Teacher: test top-1 (\d+(?:\.\d+)?)%")


def teacher_accuracy(report: Path) -> float | None:
    """The rung's teacher test accuracy (per seed: their mean), from the report's teacher
    line (``tables/teacher.md``; a report older than that file opens ``all_tables.md``
    with it); None when the report names no teacher. KD's gain depends on it."""
    for path in (report / "tables" / TEACHER_FILE, report / "all_tables.md"):
        if path.is_file():
            found = TEACHER.match(path.read_text())
            return float(found.group(1)) if found else None
    return None


def claim_verdicts(reports: list[Path]) -> pd.DataFrame:
    """Claim x rung: each default-recipe claim's verdict, with its Δ and interval."""
    cells: dict[str, dict[str, str]] = {}
    for report in reports:
        claims = pd.read_csv(report / "tables" / "claims.csv")
        for _, c in claims[claims["recipe"] == "default"].iterrows():
            cells.setdefault(c["claim"], {})[report.name] = (
                f"{c['verdict']} ({c['d_acc']:+.2f} [{c['d_acc_ci_low']:+.2f}, "
                f"{c['d_acc_ci_high']:+.2f}], n={int(c['paired_seeds'])})")
    return pd.DataFrame.from_dict(cells, orient="index",
                                  columns=[r.name for r in reports]).fillna("—")


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def ladder_figure(rows: pd.DataFrame):
    """Δ vs CE with its interval against the rung's CE accuracy: IL and its rivals on the
    left, the class-similarity controls (KD's and IL's uniform / shuffled non-GT) on the
    right. The paper's regime lies far right of every rung: named, not drawn to scale."""
    from pipeline.figures import plt  # the Agg backend, set once there

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    order = rows.drop_duplicates("rung").sort_values("ce_acc")
    span = max(order["ce_acc"].max() - order["ce_acc"].min(), 1.0)
    controls = {"kd_ablation", "introspective"}
    panels = [("IL and its rivals", lambda r: r.stage not in controls or
               (r.name == "full")),
              ("class-similarity controls", lambda r: r.stage in controls)]
    for ax, (title, keep) in zip(axes, panels, strict=True):
        shown = rows[[keep(r) for r in rows.itertuples()]]
        methods = list(dict.fromkeys(shown["method"]))
        for k, method in enumerate(methods):
            part = shown[shown["method"] == method].sort_values("ce_acc")
            shift = 0.02 * span * (k - (len(methods) - 1) / 2)  # side by side in a rung
            ax.errorbar(part["ce_acc"] + shift, part["d_acc_vs_ce"],
                        yerr=[part["d_acc_vs_ce"] - part["d_acc_ci_low"],
                              part["d_acc_ci_high"] - part["d_acc_vs_ce"]],
                        marker="o", capsize=3, label=method,
                        ls=":" if "non-GT" in method else "-")  # the controls dotted
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(order["ce_acc"], [f"{r.rung}\nCE {r.ce_acc:.1f}%" + (
            "" if pd.isna(r.teacher_acc) else f", teacher {r.teacher_acc:.1f}%")
            for r in order.itertuples()], fontsize=7)
        ax.set_xlim(order["ce_acc"].min() - 0.3 * span, order["ce_acc"].max() + 0.3 * span)
        ax.set(title=title, xlabel="rung: the CE student's test top-1")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("Δ test top-1 vs CE (points)")
    paper, label = PAPER_REGIME
    fig.suptitle(f"The verdicts across regimes (each rung's look level). Far right, off the "
                 f"axis: {label}, CE {paper:.1f}%", fontsize=10)
    fig.tight_layout()
    return fig
