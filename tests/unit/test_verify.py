"""``make verify``: bit-identity where it is due, else each mean judged by what seed noise
can produce (Welch + Holm), derived cells recomputed from their row."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.tools.verify import judge, machine_changes, welch_p

from ..helpers import REPO


def test_welch_p_by_hand_and_its_edge_cases():
    # means 10 and 12, sd 1 and 2, n 3 and 5: t = 2 / sqrt(1/3 + 4/5), Welch-Satterthwaite df
    se2 = 1 / 3 + 4 / 5
    df = se2 ** 2 / ((1 / 3) ** 2 / 2 + (4 / 5) ** 2 / 4)
    by_hand = 2 * stats.t.sf(2 / math.sqrt(se2), df)
    assert welch_p(10, 1, 3, 12, 2, 5) == pytest.approx(by_hand, rel=1e-9)
    assert welch_p(5, 0, 3, 5, 0, 3) == 1.0  # no spread, same mean: nothing moved
    assert welch_p(5, 0, 3, 5.1, 0, 3) == 0.0  # no spread, another mean: not noise
    assert math.isnan(welch_p(5, 1, 1, 5, 1, 3))  # one seed: no spread to judge by


ROWS = 20


def _table(means, sds, n) -> pd.DataFrame:
    return pd.DataFrame({"method": [f"m{i}" for i in range(ROWS)], "stage": "baselines",
                         "name": [f"m{i}" for i in range(ROWS)], "seeds": n,
                         "test_acc_mean": means, "test_acc_std": sds,
                         "test_nll_mean": np.asarray(means) / 100,
                         "test_nll_std": np.asarray(sds) / 100})


def _write(folder, df, tables=True):
    target = folder / "tables" if tables else folder
    target.mkdir(parents=True, exist_ok=True)
    df.to_csv(target / "T2_regularizers.csv", index=False)


def _draw(rng, mu, sigma, n, shift=None):
    """A rerun drawn from the reference's distribution: n seeds per row (``shift``: row 0's
    true mean moved by that many of its standard errors)."""
    mu = np.array(mu, dtype=float)
    if shift is not None:
        mu[0] += shift * sigma[0] / math.sqrt(n)
    x = rng.normal(mu[:, None], np.asarray(sigma)[:, None], size=(ROWS, n))
    return _table(x.mean(1), x.std(1, ddof=1), n)


@pytest.mark.parametrize("n", [3, 10])
def test_reruns_from_the_references_distribution_pass_at_the_family_rate(tmp_path, n):
    """300 reference-and-rerun pairs, both drawn from one distribution (as two machines'
    runs of the same seeds are, once their trajectories diverge), 40 cells each: the share
    that verify fails stays within the 5% family error rate (+ 2.5 binomial SDs)."""
    rng = np.random.default_rng(n)
    mu, sigma = rng.uniform(40, 60, ROWS), rng.uniform(0.3, 2.0, ROWS)
    fails = 0
    for _ in range(300):
        _write(tmp_path / "ref", _draw(rng, mu, sigma, n))
        _write(tmp_path / "new", _draw(rng, mu, sigma, n), tables=False)
        fails += not judge(tmp_path / "ref", tmp_path / "new", reasons=["other kernels"]).ok
    assert fails / 300 <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / 300)


def test_a_row_shifted_by_a_few_standard_errors_is_caught(tmp_path):
    """One row's true mean moved by 8 of its standard errors (n = 10): caught in at least
    90% of reruns, and the problem names that row."""
    rng = np.random.default_rng(1)
    mu, sigma = rng.uniform(40, 60, ROWS), rng.uniform(0.3, 2.0, ROWS)
    caught = 0
    for _ in range(100):
        _write(tmp_path / "ref", _draw(rng, mu, sigma, 10))
        _write(tmp_path / "new", _draw(rng, mu, sigma, 10, shift=8.0), tables=False)
        found = judge(tmp_path / "ref", tmp_path / "new", reasons=["other kernels"])
        caught += any(p.startswith("baselines / m0 / test_acc") for p in found.problems)
    assert caught >= 90


def test_bit_identity_due_fails_on_any_difference_and_says_which_case(tmp_path):
    rng = np.random.default_rng(0)
    df = _table(rng.uniform(40, 60, ROWS), rng.uniform(0.3, 2.0, ROWS), 3)
    reference = tmp_path / "ref"
    _write(reference, df)
    _write(tmp_path / "new", df, tables=False)
    same = judge(reference, tmp_path / "new", reasons=[])
    assert same.identical_due and same.ok
    df.loc[3, "test_acc_mean"] += 1e-12  # the last bits: not identical
    _write(tmp_path / "new", df, tables=False)
    moved = judge(reference, tmp_path / "new", reasons=[])
    assert not moved.ok and "T2_regularizers.csv / test_acc_mean row 3" in moved.problems[0]
    noise = judge(reference, tmp_path / "new", reasons=["AVX2 kernels here"])
    assert noise.ok and not noise.identical_due  # within noise when not due


def test_derived_cells_must_follow_from_their_row(tmp_path):
    """The committed reports' claims and paired differences follow from their rows; a
    tampered interval bound is named."""
    for profile in ("quick", "cifar10-decide"):
        folder = REPO / "reports" / profile
        assert judge(folder, folder / "tables", reasons=[]).ok, profile
    reference = tmp_path / "ref"
    shutil.copytree(REPO / "reports/quick/tables", reference / "tables")
    fresh = tmp_path / "new"
    shutil.copytree(reference / "tables", fresh)
    claims = pd.read_csv(fresh / "claims.csv")
    claims.loc[0, "d_acc_ci_high"] += 0.5
    claims.to_csv(fresh / "claims.csv", index=False)
    found = judge(reference, fresh, reasons=["AVX2 kernels here"])
    assert len(found.problems) == 1
    assert found.problems[0].startswith(f"claims / {claims.loc[0, 'claim']} / ")
    assert "d_acc_ci_high" in found.problems[0]


def test_a_moved_verdict_is_listed_with_whether_it_moved_within_noise(tmp_path):
    reference = tmp_path / "ref"
    shutil.copytree(REPO / "reports/quick/tables", reference / "tables")
    fresh = tmp_path / "new"
    shutil.copytree(reference / "tables", fresh)
    claims = pd.read_csv(fresh / "claims.csv")
    claims.loc[0, "verdict"] = "A > B"  # as if the interval had cleared 0
    claims.to_csv(fresh / "claims.csv", index=False)
    lines = judge(reference, fresh, reasons=["x"]).verdicts
    assert len(lines) == 1 and "-> A > B" in lines[0] and lines[0].endswith("within noise)")


def test_machine_changes_name_another_kernel_set_and_package_version(tmp_path, monkeypatch):
    """A reference made with other torch CPU kernels or another package version is named
    (its cells cannot be bit-identical); the same machine says nothing."""
    import pipeline.tools.report as report

    monkeypatch.setattr(report, "cpu", lambda: {"cpu": "Test CPU", "cpu_capability": "AVX2"})
    monkeypatch.setattr(report, "installed_versions", lambda: {"torch": "2.14.1"})
    provenance = tmp_path / "provenance.json"
    provenance.write_text(json.dumps({"versions": {"torch": "2.14.1"}, "cpu": "Test CPU",
                                      "cpu_capability": "AVX2"}))
    assert machine_changes(provenance) == []
    provenance.write_text(json.dumps({"versions": {"torch": "2.13.0"}, "cpu": "Other CPU",
                                      "cpu_capability": "AVX512"}))
    lines = machine_changes(provenance)
    assert len(lines) == 2
    assert "torch 2.14.1 here, 2.13.0" in lines[0]
    assert "AVX2 kernels here, AVX512 in the reference (Other CPU)" in lines[1]
    provenance.write_text(json.dumps({"versions": {"torch": "2.14.1"}}))  # an older report
    assert machine_changes(provenance) == [f"{provenance}: no CPU recorded (an older report); "
                                           "this machine: Test CPU, torch AVX2 kernels"]
