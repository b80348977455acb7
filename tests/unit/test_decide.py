"""Verdicts on hand-made paired differences whose answers are known, and the power figures
against an exact noncentral-t computation (scipy), Monte Carlo and the design's table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pipeline.results.decide import (
    decide,
    holm,
    min_detectable_effect,
    pairs_for_equivalence,
    pairs_to_detect,
    power_equivalence,
)

T975_2 = 4.302652729911275  # t quantile (0.975, df 2)
T95_2 = 2.919985580355516  # t quantile (0.95, df 2)


def test_above_zero_above_the_margin_and_undecided_between():
    found = decide([1.0, 2.0, 3.0], margin=1.0)  # mean 2, sd 1
    half = T975_2 / math.sqrt(3)
    assert (found.low, found.high) == pytest.approx((2 - half, 2 + half))
    assert found.outcome == "undecided"  # 2 - 2.48 < 0
    found = decide([2.0, 2.5, 3.0], margin=1.0)  # mean 2.5, sd 0.5: [1.26, 3.74]
    assert found.low == pytest.approx(2.5 - T975_2 * 0.5 / math.sqrt(3))
    assert found.outcome == "above" and found.above_margin
    assert found.label() == "A > B, ≥ 1"
    found = decide([0.5, 1.0, 1.5], margin=1.0)  # mean 1, sd .5: [-0.24, 2.24] -> undecided
    assert found.outcome == "undecided"
    found = decide([0.8, 1.0, 1.2], margin=1.0)  # [0.50, 1.50]: above 0, not above 1
    assert found.outcome == "above" and not found.above_margin and found.label() == "A > B"


def test_opposite_when_the_interval_is_below_zero():
    found = decide([-2.0, -2.5, -3.0], margin=1.0)
    assert found.outcome == "below" and found.label("better", "worse") == "worse"


def test_equivalent_when_the_90_interval_is_inside_the_margin():
    d = [0.2, -0.1, 0.05]  # mean 0.05, sd 0.15: 90% CI 0.05 ± 2.92 * 0.15 / sqrt(3)
    found = decide(d, margin=1.0)
    half = T95_2 * 0.15 / math.sqrt(3)
    assert (found.eq_low, found.eq_high) == pytest.approx((0.05 - half, 0.05 + half))
    assert found.outcome == "equivalent" and found.label() == "equivalent (±1)"
    # TOST p is the larger one-sided p: (0.05 + 1) / se and (1 - 0.05) / se on 2 df
    se = 0.15 / math.sqrt(3)
    p = max(stats.t.sf((0.05 + 1) / se, 2), stats.t.sf((1 - 0.05) / se, 2))
    assert found.p_equiv == pytest.approx(p)
    # the same differences with a margin of 0.2 are not shown equivalent
    assert decide(d, margin=0.2).outcome == "undecided"


def test_undecided_with_what_would_decide_it():
    found = decide([3.0, -1.0, 1.0], margin=1.0)  # mean 1, sd 2
    assert found.outcome == "undecided" and found.label() == "undecided"
    assert found.mde == pytest.approx(2 * 3.264, abs=0.02)  # 3.26 sd at n = 3, sd = 2
    assert found.mde == pytest.approx(2 * min_detectable_effect(3, 1.0, 0.05))
    assert found.n_diff == pairs_to_detect(1.0, 2.0, 0.05)
    assert found.n_equiv == pairs_for_equivalence(1.0, 2.0, 0.05)


def test_fewer_than_three_pairs_decide_nothing():
    two = decide([5.0, 5.0], margin=1.0)  # a zero-spread pair: no verdict
    assert two.outcome == "undecided" and two.label() == "undecided (2 < 3 pairs)"
    one = decide([5.0], margin=1.0)
    assert one.n == 1 and math.isnan(one.low) and math.isnan(one.mde)
    assert one.n_diff is None and decide([], 1.0).n == 0


def test_the_level_is_split_over_the_planned_looks():
    d = [0.6, 1.0, 1.4, 0.8, 1.2]  # mean 1, sd 0.316
    at_95 = decide(d, margin=0.5, alpha=0.05)
    at_3_looks = decide(d, margin=0.5, alpha=0.05 / 3)
    assert at_3_looks.low < at_95.low  # a wider interval at each of 3 looks
    half = stats.t.ppf(1 - 0.05 / 6, 4) * np.std(d, ddof=1) / math.sqrt(5)
    assert at_3_looks.low == pytest.approx(1 - half)


def _power_exact(n: int, effect: float, alpha: float) -> float:
    """Two-sided paired t-test power from scipy's noncentral t, both tails."""
    crit = stats.t.ppf(1 - alpha / 2, n - 1)
    nc = effect * math.sqrt(n)
    return stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc)


@pytest.mark.parametrize("n, expected", [(3, 3.3), (5, 1.7), (10, 1.0), (20, 0.67)])
def test_minimum_detectable_effect_matches_the_noncentral_t(n, expected):
    mde = min_detectable_effect(n, 1.0, 0.05)
    assert _power_exact(n, mde, 0.05) == pytest.approx(0.8, abs=1e-4)
    assert mde == pytest.approx(expected, abs=0.05)  # design.md §7's planning numbers


@pytest.mark.parametrize("margin, sd, alpha", [(1.0, 1.0, 0.05), (1.0, 2.0, 0.05),
                                               (0.5, 1.3, 0.05 / 3)])
def test_seeds_to_detect_the_margin_is_the_smallest_n_with_80_percent_power(margin, sd, alpha):
    n = pairs_to_detect(margin, sd, alpha)
    assert _power_exact(n, margin / sd, alpha) >= 0.8
    assert _power_exact(n - 1, margin / sd, alpha) < 0.8


def test_seeds_for_equivalence_against_the_design_and_a_simulation():
    assert pairs_for_equivalence(1.0, 1.0, 0.05) == 11  # ±1 sd: about 11 pairs (design §7)
    assert pairs_for_equivalence(0.5, 1.0, 0.05) == 36  # ±0.5 sd: about 36
    # Monte Carlo: TOST at n = 11, true difference 0, margin 1 sd, 20,000 trials
    rng = np.random.default_rng(0)
    d = rng.standard_normal((20_000, 11))
    mean, se = d.mean(1), d.std(1, ddof=1) / math.sqrt(11)
    crit = stats.t.ppf(0.95, 10)
    simulated = np.mean((mean - crit * se > -1) & (mean + crit * se < 1))
    bound = power_equivalence(11, 1.0, 0.05)
    assert bound <= simulated + 0.01 and simulated - bound < 0.03


def test_holm_against_hand_computation():
    # sorted p: 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([0.01, float("nan")])[1])


@pytest.mark.parametrize("d", [[0.3, -1.2, 2.5, 0.9], [4.0, 5.5, 3.2], [-0.1, 0.2, 0.05, -0.3, 0.1]])
def test_intervals_and_p_values_agree_with_scipy_and_statsmodels(d):
    from statsmodels.stats.weightstats import ttost_paired

    found = decide(d, margin=0.75, alpha=0.05)
    test = stats.ttest_1samp(d, 0.0)
    ci, ci90 = test.confidence_interval(0.95), test.confidence_interval(0.90)
    assert (found.low, found.high) == pytest.approx((ci.low, ci.high))
    assert (found.eq_low, found.eq_high) == pytest.approx((ci90.low, ci90.high))
    assert found.p_diff == pytest.approx(test.pvalue)
    assert found.p_equiv == pytest.approx(ttost_paired(np.array(d), np.zeros(len(d)),
                                                        -0.75, 0.75)[0])


def test_a_committed_report_re_decided_from_its_tables_equals_the_decision_on_raw_runs(
        tmp_path, base_raw):
    """The t-based verdicts need only n, mean and spread: ``decide --write`` on a report's
    CSVs gives what ``claim_rows`` gave on the runs (same params)."""
    import json
    import shutil

    import pandas as pd
    import yaml

    from pipeline.core.config import parse_params
    from pipeline.results.write import write_all
    from pipeline.tools.decide import write

    raw = json.loads(json.dumps(base_raw))
    raw.update(seeds=[0, 1, 2, 3], baselines={"methods": ["ce", "label_smoothing"]})
    raw["tune"]["enabled"] = False
    raw["claims"] = {"margin": 0.8, "level": 0.95, "looks": [4, 8]}
    params = parse_params(raw)
    rng = np.random.default_rng(1)
    for stage, name in [("baselines", "ce"), ("baselines", "label_smoothing"),
                        ("introspective", "full"), ("kd_ablation", "full")]:
        for seed in raw["seeds"]:
            folder = tmp_path / "results" / stage / f"{name}-{seed}"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps(
                {"test_acc": 50 + rng.normal(), "test_nll": 1.0, "test_ece": 0.1}))
    report = tmp_path / "report"
    write_all(params, tmp_path / "results", report / "tables", report / "figures")
    shutil.copy(report / "tables" / "all_tables.md", report / "all_tables.md")
    (report / "params.yaml").write_text(yaml.safe_dump(raw))
    (report / "provenance.json").write_text("{}")
    before = pd.read_csv(report / "tables" / "claims.csv")
    write(report, params)
    after = pd.read_csv(report / "tables" / "claims.csv")
    assert list(after["verdict"]) == list(before["verdict"])
    numeric = ["d_acc", "sd_diff", "d_acc_ci_low", "eq_ci_high", "mde", "p", "p_holm"]
    assert after[numeric].to_numpy() == pytest.approx(before[numeric].to_numpy(), nan_ok=True)
    assert "97.5% t-interval" in (report / "all_tables.md").read_text()  # 2 looks: 1 - .05/2


@pytest.mark.parametrize("seeds, undecided, expected", [
    ([0, 1, 2, 3, 4], 2, "next look: 10 seeds — `dvc exp run -S 'seeds=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"),
    ([0, 1, 2, 3, 4], 0, "every claim is decided"),
    (list(range(20)), 3, "the plan [5, 10, 20] is spent"),
    ([0, 1, 2], 1, "not in the plan"),
])
def test_the_next_look_follows_the_plan(seeds, undecided, expected):
    from pipeline.tools.decide import next_look

    assert expected in next_look([5, 10, 20], seeds, undecided)


def test_make_decide_prints_each_open_claims_mde_and_seeds(base_raw):
    """Read back from claims.csv, pandas types the column int64 when every claim has a
    figure (the figures went missing from the printout that way)."""
    import io

    import pandas as pd

    from pipeline.core.config import parse_params
    from pipeline.tools.decide import report

    claims = pd.read_csv(io.StringIO(
        "claim,recipe,paper,verdict,holds,mde,seeds_to_decide\n"
        "IL > LS,default,better,undecided,undecided,1.68,9\n"
        "IL > CE,default,better,undecided,undecided,0.84,12\n"))
    assert claims["seeds_to_decide"].dtype == "int64"
    raw = dict(base_raw, seeds=[0, 1, 2, 3, 4])
    raw["claims"] = dict(base_raw["claims"], looks=[5, 10])
    text = report(claims, parse_params(raw, "t"))
    assert "IL > LS (default)  undecided; holds here? undecided; MDE 1.68 pt, decided at ~9 " \
           "pairs" in text
    assert "MDE 0.84 pt, decided at ~12 pairs" in text
    assert "next look: 10 seeds" in text
