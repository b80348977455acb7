"""``pipeline.tools.paired``: two runs of one profile compared seed by seed, checked against
scipy's t-interval and statsmodels' paired TOST on hand-made metrics files."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired

from pipeline.core.config import parse_params
from pipeline.core.errors import ConfigError
from pipeline.tools.paired import compare, rows, to_markdown


def checkout(root, raw, acc):
    """A fake checkout: ``params.yaml`` and a ``metrics.json`` per row and seed."""
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    params = parse_params(copy.deepcopy(raw))
    for row in rows(params):
        for seed in params.seeds:
            folder = root / "results" / row.spec(seed).relative
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "metrics.json").write_text(json.dumps({"test_acc": acc(row.label, seed)}))
    return params


def test_rows_pair_by_seed_and_decide_like_a_claim(tmp_path, base_raw):
    fast = copy.deepcopy(base_raw)
    fast["runtime"]["amp"] = "bf16"  # runtime may differ: same experiment
    base = {0: 90.0, 1: 92.0, 2: 94.0}
    moved = {0: 2.0, 1: 3.0, 2: 4.0}  # label smoothing: D = 2, 3, 4
    still = {0: 0.1, 1: 0.0, 2: -0.1}  # every other row: D = 0.1, 0, -0.1
    params = checkout(tmp_path / "b", base_raw, lambda label, s: base[s])
    checkout(tmp_path / "a", fast, lambda label, s: base[s] + (
        moved[s] if label == "label smoothing" else still[s]))
    df = compare(tmp_path / "a", tmp_path / "b", margin=0.5).set_index("row")
    assert len(df) == len(rows(params)) and set(df["pairs"]) == {3}
    assert "KD (full)" in df.index and "KD from a teacher" not in df.index  # one run, once

    ls = df.loc["label smoothing"]
    low, high = stats.t.interval(0.95, 2, loc=3.0, scale=1.0 / np.sqrt(3))
    assert (ls["d"], ls["low"], ls["high"]) == pytest.approx((3.0, low, high))
    assert ls["verdict"] == "A > B, ≥ 0.5"  # low = 3 - 4.303 / sqrt(3) = 0.52 > 0.5
    ce = df.loc["CE"]
    low, high = stats.t.interval(0.90, 2, loc=0.0, scale=0.1 / np.sqrt(3))
    assert (ce["eq_low"], ce["eq_high"]) == pytest.approx((low, high), abs=1e-9)
    a = [base[s] + still[s] for s in (0, 1, 2)]
    p_tost = ttost_paired(np.array(a), np.array([base[s] for s in (0, 1, 2)]), -0.5, 0.5)[0]
    assert p_tost < 0.05 and ce["verdict"] == "equivalent (±0.5)"
    text = to_markdown(df.reset_index(), ("bf16", "fp32"), 0.5, 0.05)
    assert "| label smoothing | 3 | 95.00 | 92.00 | +3.00 (1.00) |" in text
    assert "bf16 > fp32" in text


def test_other_params_are_another_experiment(tmp_path, base_raw):
    other = copy.deepcopy(base_raw)
    other["kd"]["T"] = 2.0
    checkout(tmp_path / "a", other, lambda label, s: 90.0)
    checkout(tmp_path / "b", base_raw, lambda label, s: 90.0)
    with pytest.raises(ConfigError, match="params differ in kd"):
        compare(tmp_path / "a", tmp_path / "b", margin=0.5)


def test_a_missing_run_names_its_file(tmp_path, base_raw):
    params = checkout(tmp_path / "a", base_raw, lambda label, s: 90.0)
    checkout(tmp_path / "b", base_raw, lambda label, s: 90.0)
    gone = tmp_path / "b" / "results" / rows(params)[0].spec(1).relative / "metrics.json"
    gone.unlink()
    with pytest.raises(ConfigError, match=str(gone)):
        compare(tmp_path / "a", tmp_path / "b", margin=0.5)
