"""Same params + seed give bit-identical metrics on CPU, for every method and variant."""

from __future__ import annotations

import copy

import pytest
import torch

from pipeline.core.config import parse_params
from pipeline.core.models import build_model
from pipeline.methods import build_method
from pipeline.train import engine

from ..helpers import device_data, tiny_raw, train_cfg

CASES = [
    ("ce", "full", {}), ("label_smoothing", "full", {}), ("confidence_penalty", "full", {}),
    ("tf_kd_virtual", "full", {}), ("dml", "full", {}), ("ps_kd", "full", {}),
    ("cs_kd", "full", {}), ("online_label_smoothing", "full", {}),
    *[("kd", v, {}) for v in ("full", "uniform_non_gt", "shuffled_non_gt", "target_only",
                              "non_target_only")],
    *[("introspective", v, {"explainer": e})
      for v in ("full", "shuffled_non_gt") for e in ("gradcam", "input_gradient")],
    ("introspective", "uniform_non_gt", {"explainer": "gradient_x_input", "top_k": 2,
                                         "target_mode": "softmax", "similarity": "pearson"}),
]


def _run(params, method_name, variant, seed, accel=engine.PLAIN):
    data = device_data(num_classes=4, per_class=24)
    torch.manual_seed(1234)
    teacher = build_model("small_cnn", 4, 1, 0.25)
    engine.seed_everything(seed)
    method = build_method(method_name, params, lambda: build_model("small_cnn", 4, 1, 0.25),
                          teacher, variant)
    history = engine.fit(method, data, train_cfg(epochs=2), seed=seed, progress=False,
                         accel=accel)
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in history]


@pytest.mark.parametrize(("method", "variant", "il"), CASES,
                         ids=[f"{m}-{v}-{il.get('explainer', '')}" for m, v, il in CASES])
def test_bit_identical_reruns(base_raw, method, variant, il):
    raw = copy.deepcopy(tiny_raw(base_raw))
    raw["introspective"].update(il)
    params = parse_params(raw)
    first, second = _run(params, method, variant, 3), _run(params, method, variant, 3)
    assert first == second
    assert first != _run(params, method, variant, 4)


BF16 = [("ce", "full", {}), ("kd", "full", {}), ("introspective", "full", {"explainer": "gradcam"})]


@pytest.mark.parametrize(("method", "variant", "il"), BF16, ids=[m for m, _, _ in BF16])
def test_bf16_reruns_are_bit_identical_and_not_the_fp32_run(base_raw, method, variant, il):
    """``runtime.amp: bf16`` on the CPU is as reproducible as fp32 on one machine, and it
    is another computation (so a bf16 look is compared with fp32 seed by seed, not equal)."""
    raw = copy.deepcopy(tiny_raw(base_raw))
    raw["introspective"].update(il)
    params = parse_params(raw)
    bf16 = engine.Accel(amp=torch.bfloat16)
    first, second = _run(params, method, variant, 3, bf16), _run(params, method, variant, 3, bf16)
    assert first == second
    assert first != _run(params, method, variant, 3)
