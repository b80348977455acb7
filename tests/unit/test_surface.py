"""The response surface: its params, each point's recipe, and its table's arithmetic
(checked against numbers computed by hand)."""

from __future__ import annotations

import copy
import json
import math

import pytest

from pipeline.core.config import parse_params
from pipeline.core.errors import ConfigError
from pipeline.core.paths import SURFACE_RECORD
from pipeline.results.surface import surface_frame, surface_markdown
from pipeline.train.surface import point_params, value_of


@pytest.fixture
def raw(base_raw):
    return copy.deepcopy(base_raw)


@pytest.mark.parametrize(("change", "message"), [
    ({"knobs": ["alpha", "gt_porb"]}, r"surface.y: introspective has no key 'gt_porb'"),
    ({"x": [0.3, 1.5]}, r"surface.x: 1.5 is not a value of introspective.alpha"),
    ({"fixed": {"explainer": "saliency"}}, r"surface.fixed.explainer: 'saliency' is not a value"),
    ({"fixed": {"alpha": 0.5}}, r"surface.fixed.alpha: 'alpha' is a knob of the grid"),
    ({"method": "kd"}, r"surface.method: 'kd' distils the teacher"),
    ({"reference": "nope"}, r"surface.reference: unknown method 'nope'"),
    ({"y": [0.9, 0.9]}, r"surface.y: values must be distinct"),
    ({"knobs": ["alpha"]}, r"surface.knobs"),
])
def test_bad_surface_params_name_the_key(raw, change, message):
    raw["surface"].update(change)
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)


def test_a_point_is_the_tuned_recipe_with_its_knobs_and_the_fixed_keys(raw, tmp_path,
                                                                       monkeypatch):
    raw["introspective"].update(target_mode="softmax", tau=0.2)
    params = parse_params(raw)
    monkeypatch.chdir(tmp_path)  # params_tuned.yaml is read from the working directory
    (tmp_path / "params_tuned.yaml").write_text(
        "introspective:\n  train: {lr: 0.02}\n  introspective: {T: 2.0, alpha: 0.9}\n")
    point = point_params(params, 0.3, 0.95)
    il = point.introspective
    assert (il.alpha, il.gt_prob, il.target_mode) == (0.3, 0.95, "fixed_gt")  # knobs, fixed
    assert il.T == 2.0 and point.student.train.lr == 0.02  # the tuned recipe's other keys
    assert il.tau == 0.2 and il.explainer == params.introspective.explainer  # the rest as set
    assert point.student.train.weight_decay == params.student.train.weight_decay


def test_dvc_arguments_map_back_to_the_configured_values():
    assert value_of("0.5", [0.1, 0.5], "x") == 0.5
    assert value_of("gradcam", ["input_gradient", "gradcam"], "y") == "gradcam"
    assert value_of("3", [1, 3], "x") == 3
    with pytest.raises(ConfigError, match=r"surface.x: '0.4' is not one of its values"):
        value_of("0.4", [0.1, 0.5], "x")


def _write(folder, name, method, seeds, acc, skipped=False):
    (folder / name).mkdir(parents=True)
    record = {"method": method, "seeds": seeds, "skipped": skipped}
    if not skipped:
        record.update(val_acc=acc, val_nll=[1.0] * len(acc))
    (folder / name / SURFACE_RECORD).write_text(json.dumps(record))


def test_the_table_pairs_each_point_with_the_reference_by_seed(raw, tmp_path):
    raw["surface"].update(x=[0.3, 0.7], y=[0.9], seeds=[1, 2, 3])
    params = parse_params(raw)
    _write(tmp_path, "reference", "ce", [1, 2, 3], [50.0, 52.0, 54.0])
    _write(tmp_path, "0.3-0.9", "introspective", [1, 2, 3], [51.0, 55.0, 53.0])
    _write(tmp_path, "0.7-0.9", "introspective", [3, 1], [60.0, 56.0])  # seed 2 not run yet
    df = surface_frame(params, tmp_path)
    first, second = df.iloc[0], df.iloc[1]
    # point 0.3: d = (1, 3, -1), mean 1, sd 2; t(0.975, 2) = 4.30265 (tables)
    half = 4.30265 * 2 / math.sqrt(3)
    assert first["d_val_acc"] == pytest.approx(1.0)
    assert (first["d_ci_low"], first["d_ci_high"]) == pytest.approx((1 - half, 1 + half), abs=1e-4)
    assert first["val_acc"] == pytest.approx(53.0) and first["val_acc_sd"] == pytest.approx(2.0)
    # point 0.7: seeds 3 and 1 -> d = (60 - 54, 56 - 50) = (6, 6): sd 0, a zero-width interval
    assert second["paired_seeds"] == 2 and second["d_val_acc"] == pytest.approx(6.0)
    assert (second["d_ci_low"], second["d_ci_high"]) == pytest.approx((6.0, 6.0))
    assert first["reference_val_acc"] == pytest.approx(52.0)
    assert first["reference_val_acc_sd"] == pytest.approx(2.0)
    text = surface_markdown(params, df)
    assert "Best point: alpha 0.7, gt_prob 0.9, Δ +6.00" in text
    assert "Intervals above 0: 1 of 2 points; below 0: 0." in text
    assert "CE (tuned): 52.00 ± 2.00" in text


def test_skipped_or_missing_points_leave_the_table_empty(raw, tmp_path):
    params = parse_params(raw)
    _write(tmp_path, "reference", "ce", [100, 101], None, skipped=True)
    assert surface_frame(params, tmp_path).empty


def test_the_figure_draws_the_map_and_the_band(raw, tmp_path):
    from pipeline.figures import response_surface

    raw["surface"].update(x=[0.3, 0.7], y=[0.9], seeds=[1, 2])
    params = parse_params(raw)
    _write(tmp_path, "reference", "ce", [1, 2], [50.0, 52.0])
    _write(tmp_path, "0.3-0.9", "introspective", [1, 2], [51.0, 55.0])
    _write(tmp_path, "0.7-0.9", "introspective", [1, 2], [49.0, 50.0])
    fig = response_surface(surface_frame(params, tmp_path), ["alpha", "gt_prob"], "IL", "CE")
    heat, lines = fig.axes[:2]
    assert [t.get_text() for t in heat.texts][0].startswith("+2.0")  # (1 + 3) / 2
    assert heat.texts[1].get_text().startswith("-1.5")  # (-1 - 2) / 2
    assert any(line.get_linestyle() == "--" for line in lines.lines)  # the reference's mean
