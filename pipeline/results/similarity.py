"""The teacher's class similarity (mean softmax per true class), which IL's is compared with.

Computed by the aggregate stage, never inside IL training: IL does not depend on the teacher.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


@torch.no_grad()
def teacher_similarity(teacher: nn.Module, x: Tensor, y: Tensor, num_classes: int,
                       batch_size: int = 512) -> np.ndarray:
    """Mean teacher softmax per true class (rows: true class)."""
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    for i in range(0, len(y), batch_size):
        probs = torch.softmax(teacher(x[i:i + batch_size]).double(), dim=1).cpu()
        sums.index_add_(0, y[i:i + batch_size].cpu(), probs)
    counts = torch.bincount(y.cpu(), minlength=num_classes).clamp_min(1).double()
    return (sums / counts[:, None]).numpy()


def teacher_similarity_on(teacher: nn.Module, prepared, split: str = "test") -> np.ndarray:
    """:func:`teacher_similarity` on a prepared split, normalised as in training."""
    shape = (1, -1, 1, 1)
    mean = torch.tensor(prepared.meta["mean"]).view(shape)
    std = torch.tensor(prepared.meta["std"]).view(shape)
    x = (torch.from_numpy(prepared.x(split)).float() / 255.0 - mean) / std
    teacher.eval()
    return teacher_similarity(teacher, x, torch.from_numpy(prepared.y(split)),
                              prepared.num_classes)
