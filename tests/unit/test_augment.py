"""Batched crop+flip equals the per-sample definition."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.train.augment import random_crop_flip


def test_crop_matches_manual_pad_and_slice():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    g = torch.Generator().manual_seed(0)
    out = random_crop_flip(x, padding=2, flip=False, generator=g)
    offsets = torch.randint(0, 5, (2, 2), generator=torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(2):
        r, c = offsets[i].tolist()
        torch.testing.assert_close(out[i], padded[i, :, r:r + 5, c:c + 5])


def test_flip_is_mirror_or_identity_and_mixes():
    x = torch.randn(64, 1, 4, 4)
    out = random_crop_flip(x, padding=0, flip=True, generator=torch.Generator().manual_seed(1))
    same = [(out[i] == x[i]).all().item() for i in range(64)]
    mirrored = [(out[i] == x[i].flip(-1)).all().item() for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 10 < sum(mirrored) < 54


def test_no_augmentation_is_identity():
    x = torch.randn(3, 2, 4, 4)
    torch.testing.assert_close(random_crop_flip(x, 0, False, torch.Generator()), x)
