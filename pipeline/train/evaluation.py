"""What a run reports: every evaluated model's metrics on val and test, in fp32."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.core.metrics import classification_metrics
from pipeline.methods.base import Method, eval_mode
from pipeline.train.device import PLAIN, Accel, DeviceData


@torch.no_grad()
def predict(model: nn.Module, data: DeviceData, split: str, batch_size: int,
            accel: Accel = PLAIN) -> Tensor:
    """Logits in fp32 whatever ``runtime.amp`` trains in: the reported accuracy, NLL, ECE
    and reliability are the model's, not its reduced-precision arithmetic's."""
    logits = []
    with eval_mode(model):
        for i in range(0, data.size(split), batch_size):
            x = data.batch(split, slice(i, i + batch_size))[0]
            logits.append(model(x.contiguous(memory_format=accel.memory_format)).float())
    return torch.cat(logits)


def evaluate(method: Method, data: DeviceData, batch_size: int,
             accel: Accel = PLAIN) -> dict[str, float]:
    """Metrics of every evaluated model on val (if any) and test.

    With several models (DML peers) each gets a ``<name>_`` prefix and the
    unprefixed keys are their mean.
    """
    models = method.evaluated()
    out: dict[str, float] = {}
    per_model: list[dict[str, float]] = []
    for name, model in models.items():
        metrics: dict[str, float] = {}
        for split in ("val", "test"):
            if data.size(split):
                logits = predict(model, data, split, batch_size, accel)
                metrics.update(classification_metrics(logits, data.y[split], f"{split}_"))
        per_model.append(metrics)
        if len(models) > 1:
            out.update({f"{name}_{k}": v for k, v in metrics.items()})
    for key in per_model[0]:
        out[key] = float(np.mean([m[key] for m in per_model]))
    return out
