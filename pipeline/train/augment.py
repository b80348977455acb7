"""Batched augmentation on tensors (random crop with zero padding + horizontal flip).

Done on whole batches on the training device, so 32x32 data needs no DataLoader
workers; randomness comes from an explicit generator for reproducibility.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_flip(x: Tensor, padding: int, flip: bool, generator: torch.Generator) -> Tensor:
    """Per-sample random ``padding``-shift crop and optional horizontal flip.

    Offsets are drawn on the CPU generator (deterministic, the same on every device), then
    moved to ``x``'s device without the host waiting for it (:func:`to_device`).
    """
    n, _, h, w = x.shape
    if padding > 0:
        offsets = to_device(torch.randint(0, 2 * padding + 1, (n, 2), generator=generator),
                            x.device)
        padded = F.pad(x, (padding, padding, padding, padding))
        rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (n, h)
        cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (n, w)
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mask = to_device(torch.rand(n, generator=generator) < 0.5, x.device)
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A CPU tensor on ``device``: from pinned memory and non-blocking on CUDA (a pageable
    copy makes the host wait for the GPU's queue); unchanged on the CPU."""
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)
