"""No host synchronisation per training step, for every method and variant.

On a GPU each read of a device value by the host (``.item()``, ``float(t)``, ``if t:``,
``.tolist()``, ``.cpu()``, a boolean-mask index, whose size only the GPU knows) makes the
CPU wait for the GPU's queue, so their times add instead of overlapping. Counted on the
CPU here by wrapping those Tensor methods during one epoch of 4 and of 16 steps: the count
must not grow with the steps (a few reads per epoch are fine). What the CPU cannot show —
host-to-device copies of CPU-drawn values — is checked on a GPU by the device check.
"""

from __future__ import annotations

import collections

import pytest
import torch

from pipeline.core.config import parse_params
from pipeline.core.models import build_model
from pipeline.methods import REGISTRY, Teacher, build_method
from pipeline.train import engine

from ..helpers import device_data, train_cfg

READS = ("item", "__bool__", "__float__", "__int__", "tolist", "cpu", "numpy")


def _is_mask(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


def epoch_reads(monkeypatch, method: str, variant: str, per_class: int,
                base_raw: dict) -> collections.Counter:
    params = parse_params(base_raw)
    data = device_data(num_classes=4, per_class=per_class)
    make = lambda: build_model("small_cnn", 4, 1, 0.25)  # noqa: E731
    teacher = make() if REGISTRY[method].teacher is Teacher.REQUIRED else None
    built = build_method(method, params, make, teacher, variant)
    cfg, accel = train_cfg(epochs=1, batch_size=16), engine.Accel()
    engine.prepare_models(built, data.device, accel)
    built.bind(data.size("train"), data.num_classes, 1, data.device)
    state = engine.TrainState.create(built, cfg, 0, data.device, accel, None)
    position = engine.Position.new_epoch(data.size("train"), state.generator, data.device)
    counts: collections.Counter = collections.Counter()
    with monkeypatch.context() as patch:
        for name in READS:
            real = getattr(torch.Tensor, name)
            patch.setattr(torch.Tensor, name, lambda self, *a, _r=real, _n=name, **k: (
                counts.update([_n]), _r(self, *a, **k))[1])
        for name in ("__getitem__", "__setitem__"):
            real = getattr(torch.Tensor, name)
            patch.setattr(torch.Tensor, name, lambda self, index, *a, _r=real, _n=name: (
                counts.update([f"{_n}[mask]"] if _is_mask(index) else []),
                _r(self, index, *a))[1])
        engine.train_epoch(state, data, cfg, 0, position, engine.StopRequest(), None, accel,
                           False, "syncs")
    return counts


CASES = [(m, v) for m, info in REGISTRY.items() for v in info.variants]


@pytest.mark.parametrize(("method", "variant"), CASES, ids=[f"{m}-{v}" for m, v in CASES])
def test_host_reads_do_not_grow_with_the_steps(monkeypatch, base_raw, method, variant):
    short = epoch_reads(monkeypatch, method, variant, 16, base_raw)  # 4 steps
    long = epoch_reads(monkeypatch, method, variant, 64, base_raw)  # 16 steps
    assert long == short, f"{method}/{variant}: {dict(short)} in 4 steps, {dict(long)} in 16"
    assert sum(long.values()) <= 3  # the epoch's finite-loss check and the like
