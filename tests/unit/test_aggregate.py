"""Aggregation on hand-made metrics files: means, stds, paired CIs, missing and failed runs."""

from __future__ import annotations

import json
import math

import pytest

from pipeline.core.config import parse_params
from pipeline.results.aggregate import pooled_reliability, summarize
from pipeline.results.design import CE_ROW, TUNED_CE_ROW, Row, Table, tables
from pipeline.results.render import to_markdown
from pipeline.results.write import write_all


def _write(root, stage, name, seed, **metrics):
    folder = root / stage / f"{name}-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_summary_means_stds_pairing_missing_and_failed(tmp_path):
    for seed, acc in zip((0, 1, 2), (90.0, 91.0, 92.0), strict=True):
        _write(tmp_path, "baselines", "ce", seed, test_acc=acc, test_nll=0.3, test_ece=0.02)
    # KD: seed 0 fine, seed 1 failed (nan), seed 2 missing entirely, seed 3 has no CE partner
    _write(tmp_path, "baselines", "kd", 0, test_acc=93.0, test_nll=0.2, test_ece=0.01)
    _write(tmp_path, "baselines", "kd", 1, test_acc=float("nan"), test_nll=0.2, test_ece=0.01)
    _write(tmp_path, "baselines", "ls", 0, test_acc=92.0, test_nll=0.25, test_ece=0.03)
    _write(tmp_path, "baselines", "ls", 1, test_acc=92.0, test_nll=0.27, test_ece=0.05)
    _write(tmp_path, "baselines", "ls", 2, test_acc=95.0, test_nll=0.29, test_ece=0.04)
    table = Table("T", "t", (CE_ROW, Row("KD", "baselines", "kd"), Row("LS", "baselines", "ls")))
    df = summarize(table, tmp_path, [0, 1, 2]).set_index("method")
    assert df.loc["CE", "test_acc_mean"] == pytest.approx(91.0)
    assert df.loc["CE", "test_acc_std"] == pytest.approx(1.0)  # sample std (ddof=1)
    assert df.loc["KD", "seeds"] == 1 and df.loc["KD", "missing_seeds"] == "1 2"
    assert df.loc["KD", "test_acc_mean"] == pytest.approx(93.0)  # the nan run is not averaged
    assert df.loc["KD", "d_acc_vs_ce"] == pytest.approx(3.0)
    assert df.loc["KD", "verdict"] == "undecided (1 < 3 pairs)"
    # LS - CE per seed: [2, 1, 3] -> mean 2, sd 1
    half = 4.302652729911275 / math.sqrt(3)
    assert df.loc["LS", "d_acc_vs_ce"] == pytest.approx(2.0)
    assert df.loc["LS", "d_acc_ci_low"] == pytest.approx(2.0 - half)
    assert df.loc["LS", "verdict"] == "undecided"  # CI crosses 0, and 1.0 too
    assert df.loc["LS", "test_nll_mean"] == pytest.approx(0.27)
    md = to_markdown(df.reset_index(), "title")
    assert "| KD | 1 (missing: 1 2) | 93.00 ± 0.00 |" in md
    assert f"+2.00 [{2 - half:+.2f}, {2 + half:+.2f}]" in md


def test_two_seeds_never_give_a_verdict(tmp_path):
    for seed in range(2):
        _write(tmp_path, "baselines", "ce", seed, test_acc=90.0, test_nll=1, test_ece=0)
        _write(tmp_path, "baselines", "kd", seed, test_acc=91.0, test_nll=1, test_ece=0)
    df = summarize(Table("T", "t", (CE_ROW, Row("KD", "baselines", "kd"))), tmp_path, [0, 1])
    assert df.set_index("method").loc["KD", "verdict"] == "undecided (2 < 3 pairs)"


def test_verdict_better_when_ci_above_zero(tmp_path):
    for seed in range(3):
        _write(tmp_path, "baselines", "ce", seed, test_acc=90.0 + seed, test_nll=1, test_ece=0)
        _write(tmp_path, "baselines", "kd", seed, test_acc=95.0 + seed + 0.1 * seed,
               test_nll=1, test_ece=0)
    df = summarize(Table("T", "t", (CE_ROW, Row("KD", "baselines", "kd"))), tmp_path, [0, 1, 2])
    assert df.set_index("method").loc["KD", "verdict"] == "better, ≥ 1"  # [5, 5.1, 5.2]


def test_tables_follow_params(base_raw):
    raw = dict(base_raw, baselines={"methods": ["ce"]}, kd_ablation={"variants": ["full"]})
    raw["tune"] = dict(base_raw["tune"], enabled=False)
    t1, t2, t3, t4 = tables(parse_params(raw))
    assert [r.label for r in t1.rows] == ["CE", "KD (full)"]
    assert [r.label for r in t2.rows] == ["CE", "IL"]
    assert [r.label for r in t3.rows] == ["CE", "KD from a teacher", "IL"]
    # one run per result: T3's KD row is T1's KD (full) run, not a second training
    assert (t3.rows[1].stage, t3.rows[1].name) == ("kd_ablation", "full")
    # without the full KD variant there is no KD run for T3 to read
    raw["kd_ablation"] = {"variants": ["shuffled_non_gt"]}
    assert [r.label for r in tables(parse_params(raw))[2].rows] == ["CE", "IL"]
    assert [r.name for r in t4.rows] == ["ce", "full", "uniform_non_gt", "shuffled_non_gt"]
    assert t2.reference == CE_ROW


def test_tuned_rows_and_reference(base_raw, tmp_path):
    raw = dict(base_raw, baselines={"methods": ["ce"]})
    raw["tune"] = dict(base_raw["tune"], methods=["ce", "introspective"], teacher_methods=["kd"])
    t1, t2, t3, t4 = tables(parse_params(raw))
    assert [r.label for r in t3.rows] == ["CE", "CE (tuned)", "KD from a teacher",
                                          "KD from a teacher (tuned)", "IL", "IL (tuned)"]
    assert t3.reference == TUNED_CE_ROW and t1.reference == CE_ROW
    assert "CE (tuned)" not in [r.label for r in t1.rows + t4.rows]
    for seed, (ce, tuned_ce, kd) in enumerate([(90, 92, 93), (91, 93, 95), (92, 94, 95)]):
        _write(tmp_path, "baselines", "ce", seed, test_acc=ce, test_nll=1, test_ece=0)
        _write(tmp_path, "tuned", "ce", seed, test_acc=tuned_ce, test_nll=1, test_ece=0)
        _write(tmp_path, "kd_ablation", "full", seed, test_acc=kd, test_nll=1, test_ece=0)
    df = summarize(t3, tmp_path, [0, 1, 2]).set_index("method")
    assert df.loc["CE (tuned)", "verdict"] == "reference"
    assert df.loc["CE", "d_acc_vs_ce"] == pytest.approx(-2.0)  # paired to the tuned CE
    assert df.loc["KD from a teacher", "d_acc_vs_ce"] == pytest.approx((1 + 2 + 1) / 3)
    assert "Δ top-1 vs CE (tuned)" in to_markdown(df.reset_index(), "T3")


def test_pooled_reliability(tmp_path):
    for seed, (acc, conf) in enumerate([(1.0, 0.9), (0.5, 0.7)]):
        folder = tmp_path / "baselines" / f"ce-{seed}"
        folder.mkdir(parents=True)
        (folder / "reliability.json").write_text(json.dumps(
            {"lower": [0.0, 0.5], "upper": [0.5, 1.0], "count": [0, 2 + 2 * seed],
             "accuracy": [0.0, acc], "confidence": [0.0, conf]}))
    pooled = pooled_reliability(tmp_path, CE_ROW, [0, 1])
    assert pooled["count"] == [0, 6]
    assert pooled["accuracy"][1] == pytest.approx((2 * 1.0 + 4 * 0.5) / 6)
    assert pooled["confidence"][1] == pytest.approx((2 * 0.9 + 4 * 0.7) / 6)
    assert pooled["ece"] == pytest.approx(abs(4 / 6 - 4.6 / 6))


def test_figures_have_expected_axes(tmp_path, base_raw):
    import matplotlib.pyplot as plt

    from pipeline import figures

    for seed in (0, 1):
        _write(tmp_path, "baselines", "ce", seed, test_acc=90.0 + seed, test_nll=1, test_ece=0)
        _write(tmp_path, "baselines", "kd", seed, test_acc=92.0, test_nll=1, test_ece=0)
    df = summarize(Table("T", "t", (CE_ROW, Row("KD", "baselines", "kd"))), tmp_path, [0, 1])
    fig = figures.accuracy_bars(df, "my table")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test top-1 accuracy (%)" and ax.get_title() == "my table"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["CE", "KD"]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([90.5, 92.0])
    plt.close(fig)
    raw = dict(base_raw, baselines={"methods": ["ce"]}, seeds=[0, 1])
    written = write_all(parse_params(raw), tmp_path, tmp_path / "tables", tmp_path / "figures")
    names = {p.name for p in written}
    assert {"T1_kd_components.md", "T2_regularizers.csv", "T3_peers_teachers_accuracy.png",
            "all_tables.md"} <= names
    t1 = (tmp_path / "tables" / "T1_kd_components.md").read_text()
    assert "| KD (full) | 0 (missing: 0 1) |" in t1  # not run -> reported as missing


def _teacher(root, seed, acc, run_id):
    folder = root / "teacher" / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({"test_acc": acc}))
    (folder / "mlflow_run.json").write_text(json.dumps({"run_id": run_id}))


def test_teacher_line_warns_when_the_teacher_is_no_better(tmp_path, base_raw):
    from pipeline.results.aggregate import teacher_line

    params = parse_params(dict(base_raw, seeds=[0, 1, 2]))
    for seed in (0, 1, 2):  # a fixed split: every seed's folder is a copy of one run
        _teacher(tmp_path, seed, 60.0, "shared-run")
    for seed, acc in zip((0, 1, 2), (58.0, 61.0, 64.0), strict=True):  # CE mean 61 > 60
        _write(tmp_path, "baselines", "ce", seed, test_acc=acc, test_nll=1.0)
    line = teacher_line(tmp_path, CE_ROW, params)
    assert line.startswith("**Warning: the teacher is not better than its student.**")
    assert "Teacher: test top-1 60.00%; CE student: 61.00% (mean of 3 seeds)" in line
    for seed in (0, 1, 2):
        _write(tmp_path, "baselines", "ce", seed, test_acc=45.0, test_nll=1.0)
    assert teacher_line(tmp_path, CE_ROW, params).startswith("Teacher: test top-1 60.00%")
    for seed, acc in zip((0, 1, 2), (59.0, 60.0, 64.0), strict=True):  # per_seed: 3 runs
        _teacher(tmp_path, seed, acc, f"run-{seed}")
    assert teacher_line(tmp_path, CE_ROW, params).startswith(
        "Teacher: test top-1 61.00% (mean of 3 per-seed teachers); CE student: 45.00%")


def test_claims_pair_by_seed_and_say_whether_the_paper_holds(tmp_path, base_raw):
    """IL - CE per seed [2, 3, 4]: mean 3, 95% CI 3 ± 2.48 -> holds (not beyond the 1-pt
    margin: the lower bound 0.52 < 1); IL - KD per seed [0.2, -0.1, 0.05]: the 90% CI
    0.05 ± 0.25 lies inside ±1 -> equivalent, so IL ≈ KD holds; KD full - uniform
    [-2, -3, -4] -> the opposite."""
    from pipeline.results.claims import claim_rows, claims_markdown

    raw = json.loads(json.dumps(base_raw))
    raw["tune"]["enabled"] = False
    raw["baselines"]["methods"] = ["ce"]
    raw["kd_ablation"]["variants"] = ["full", "uniform_non_gt"]
    raw["introspective_ablation"]["variants"] = ["full"]
    params = parse_params(raw)
    for seed, il_kd in zip((0, 1, 2), (0.2, -0.1, 0.05), strict=True):
        _write(tmp_path, "baselines", "ce", seed, test_acc=50.0 + seed, test_nll=1.0)
        _write(tmp_path, "introspective", "full", seed, test_acc=52.0 + 2 * seed, test_nll=1.0)
        _write(tmp_path, "kd_ablation", "full", seed, test_acc=52.0 + 2 * seed - il_kd,
               test_nll=1.0)
        _write(tmp_path, "kd_ablation", "uniform_non_gt", seed,
               test_acc=52.0 + 2 * seed - il_kd + 2 + seed, test_nll=1.0)
    df = claim_rows(params, tmp_path, [0, 1, 2]).set_index("claim")
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    ce = df.loc["IL > CE"]
    assert (ce["d_acc"], ce["d_acc_ci_low"]) == pytest.approx((3.0, 3.0 - half))
    assert ce["verdict"] == "A > B" and ce["holds"] == "holds" and ce["recipe"] == "default"
    kd = df.loc["IL ≈ KD"]
    assert kd["d_acc"] == pytest.approx(0.05)
    assert kd["verdict"] == "equivalent (±1)" and kd["holds"] == "holds (equivalent)"
    ablation = df.loc["KD full > KD uniform non-GT"]
    assert ablation["d_acc"] == pytest.approx(-3.0) and ablation["holds"] == "opposite"
    assert "IL > LS" not in df.index  # label smoothing is not configured: no claim row
    # three judged claims, Holm over them: the smallest p is multiplied by 3
    p = df["p"].sort_values()
    assert df.loc[p.index[0], "p_holm"] == pytest.approx(min(1.0, 3 * p.iloc[0]))
    text = claims_markdown(df.reset_index(), [3])
    assert "| IL ≈ KD | default | 3 | +0.05 [" in text and "95% t-interval" in text
