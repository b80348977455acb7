"""Per-run figures: what the explanation mosaic shows, checked pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from matplotlib import pyplot as plt

from pipeline.figures import explanation_grid


def _tile(mosaic: np.ndarray, row: int, col: int, size: int) -> np.ndarray:
    step = size + max(1, size // 8)  # the tile plus the white gap after it
    return mosaic[row * step:row * step + size, col * step:col * step + size]


@pytest.mark.parametrize("channels", [1, 3])
def test_explanation_mosaic_shows_each_map_scaled_to_its_own_range(channels):
    size, classes = 8, ["a", "b", "c"]
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, channels, size, size, generator=gen) * 5 - 1
    maps = torch.rand(2, 3, size, size, generator=gen) * torch.tensor([1.0, 10.0, 0.1]).view(
        1, 3, 1, 1)  # very different ranges per class: each tile is scaled on its own
    fig = explanation_grid(images, torch.tensor([2, 0]), maps, classes, "gradcam")
    try:
        ax, = fig.axes
        mosaic = np.asarray(ax.images[0].get_array())
        labels_x = [t.get_text() for t in ax.get_xticklabels()]
        labels_y = [t.get_text() for t in ax.get_yticklabels()]
    finally:
        plt.close(fig)
    assert mosaic.shape == (2 * 9 - 1, 4 * 9 - 1, 3)
    for i in range(2):
        img = images[i].permute(1, 2, 0).numpy().astype(np.float64)
        img = (img - img.min()) / (img.max() - img.min())  # hand min-max, then gray as RGB
        want = np.repeat(img, 3, -1) if channels == 1 else img
        np.testing.assert_allclose(_tile(mosaic, i, 0, size), want, atol=1e-6)
        for j in range(3):
            m = maps[i, j].numpy().astype(np.float64)  # same size: interpolation is identity
            want = colormaps["inferno"]((m - m.min()) / (m.max() - m.min()))[..., :3]
            np.testing.assert_allclose(_tile(mosaic, i, j + 1, size), want, atol=1e-6)
    assert np.all(mosaic[size, :] == 1.0) and np.all(mosaic[:, size] == 1.0)  # white gaps
    assert labels_x == ["image", "class a", "class b", "class c"]
    assert labels_y == ["true c", "true a"]
