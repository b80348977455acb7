from __future__ import annotations

from pipeline.results.sweep import summarize_sweep


def _exp(name, tau, accs, val_nll):
    metrics = {f"results/introspective/full-{s}/metrics.json": {"data": {
        "val_acc": a, "val_nll": val_nll, "test_acc": a + 1, "test_nll": 0.1, "test_ece": 0.01,
        "target_gt_prob": 0.9}} for s, a in enumerate(accs)}
    metrics["results/baselines/ce-0/metrics.json"] = {"data": {"val_acc": 0.0}}
    params = {"params.yaml": {"data": {"introspective": {"tau": tau, "alpha": 0.5,
                                                         "variants": ["full"]}}}}
    return {"name": name, "data": {"metrics": metrics, "params": params}}


def test_sweep_sorted_by_validation_and_shows_varying_params():
    show = [{"rev": "abc", "experiments": [
        {"revs": [_exp("il-a", 0.1, [90.0, 92.0], 0.3)]},
        {"revs": [_exp("il-b", 0.05, [95.0, 95.0], 0.2)]},
        {"revs": [_exp("il-c", 0.2, [95.0, 95.0], 0.1)]},
        {"revs": [_exp("other", 0.3, [99.0, 99.0], 0.1)]},
    ]}]
    df = summarize_sweep(show, "introspective", "full", prefix="il-")
    assert list(df["experiment"]) == ["il-c", "il-b", "il-a"]  # val acc, then val NLL
    assert list(df.columns[:3]) == ["experiment", "seeds", "tau"]  # alpha does not vary
    assert df.iloc[2]["val_acc"] == "91.000 ± 1.414"
    assert df.iloc[0]["seeds"] == 2
