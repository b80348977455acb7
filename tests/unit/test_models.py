"""Every registered model: logits and last feature-map shapes at 32x32 and 8x8."""

from __future__ import annotations

import pytest
import torch

from pipeline.core.errors import ConfigError
from pipeline.core.models import ARCHS, build_model, count_parameters

ALL = [*ARCHS, "wrn-16-2"]


@pytest.mark.parametrize("arch", ALL)
@pytest.mark.parametrize(("size", "channels"), [(32, 3), (8, 1)])
def test_shapes(arch, size, channels):
    width = 0.25 if arch.startswith(("vgg", "resnet110")) else 0.5
    model = build_model(arch, num_classes=7, in_channels=channels, width=width).eval()
    x = torch.randn(2, channels, size, size)
    logits, fmap = model.forward_features(x)
    assert logits.shape == (2, 7)
    assert fmap.ndim == 4 and fmap.shape[0] == 2
    assert fmap.shape[1] == model.fc.in_features
    assert (fmap >= 0).all()  # post-ReLU map, as Grad-CAM expects
    torch.testing.assert_close(model(x), logits)
    # logits are exactly the linear head on the spatially averaged map
    torch.testing.assert_close(logits, fmap.mean((2, 3)) @ model.fc.weight.T + model.fc.bias)


def test_cifar_resnet_spatial_and_size():
    model = build_model("resnet20", 10, 3)
    assert model.features(torch.zeros(1, 3, 32, 32)).shape == (1, 64, 8, 8)
    # He et al. (2016), Table 6: ResNet-20 has 0.27M parameters.
    assert 0.26e6 < count_parameters(model) < 0.28e6
    assert 0.84e6 < count_parameters(build_model("resnet56", 10, 3)) < 0.87e6


def test_wrn_width():
    model = build_model("wrn-16-2", 10, 3)
    assert model.features(torch.zeros(1, 3, 32, 32)).shape == (1, 128, 8, 8)


@pytest.mark.parametrize("name", ["resnet19", "wrn-15-2", "vgg16", ""])
def test_unknown_arch(name):
    with pytest.raises(ConfigError, match="unknown architecture"):
        build_model(name, 10, 3)
