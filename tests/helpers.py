"""Small builders shared by tests."""

from __future__ import annotations

from pipeline.config import SyntheticConfig, TrainConfig
from pipeline.data import Prepared, make_synthetic, normalisation_stats
from pipeline.engine import DeviceData


def synthetic_prepared(num_classes: int = 4, per_class: int = 40, seed: int = 0) -> Prepared:
    cfg = SyntheticConfig(num_classes=num_classes, group_size=2, image_size=8,
                          train_per_class=per_class, test_per_class=per_class // 2,
                          noise=0.5, seed=seed)
    arrays = make_synthetic(cfg)
    arrays["x_val"], arrays["y_val"] = arrays["x_train"][:0], arrays["y_train"][:0]
    mean, std = normalisation_stats(arrays["x_train"])
    meta = {"dataset": "synthetic", "classes": [str(c) for c in range(num_classes)],
            "shape": list(arrays["x_train"].shape[1:]), "mean": mean, "std": std,
            "sha256": "test"}
    return Prepared(arrays, meta)


def device_data(device: str = "cpu", **kwargs) -> DeviceData:
    import torch

    return DeviceData(synthetic_prepared(**kwargs), torch.device(device))


def train_cfg(**overrides) -> TrainConfig:
    base = dict(epochs=3, batch_size=32, lr=0.05, weight_decay=5e-4,
                schedule={"name": "cosine"}, augment={"crop_padding": 1, "flip": True})
    return TrainConfig.model_validate({**base, **overrides})
