"""Classifiers used in the paper's setting: CIFAR ResNets, WRNs, VGGs and a small CNN.

Every model is ``features`` (a conv trunk ending in a non-negative feature map,
the "last convolutional feature map" Grad-CAM explains) followed by a global
average pool and one linear layer. That shared head is what lets the
``gradcam`` explainer compute all class maps with one tensor product.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.core.archs import NAMES, RESNET_DEPTHS, VGG_DEPTHS, WRN, check_arch
from pipeline.core.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from pipeline.core.sections import ModelConfig



class Classifier(nn.Module):
    """``logits = fc(mean_hw(features(x)))``."""

    def __init__(self, trunk: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.fc = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x)

    def head(self, fmap: Tensor) -> Tensor:
        return self.fc(fmap.mean(dim=(2, 3)))

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        fmap = self.features(x)
        return self.head(fmap), fmap

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _ch(base: int, width: float) -> int:
    return max(1, int(round(base * width)))


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    """Post-activation residual block of He et al. (2016), 1x1-conv projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, stride), nn.ReLU(inplace=True),
                                  *_conv_bn(cout, cout))
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class WideBlock(nn.Module):
    """Pre-activation block of Zagoruyko & Komodakis (2016)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(pre))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


def _stages(block: type[nn.Module], cin: int, widths: list[int], n: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i, cout in enumerate(widths):
        for j in range(n):
            layers.append(block(cin, cout, 2 if (i > 0 and j == 0) else 1))
            cin = cout
    return layers


def resnet(depth: int, num_classes: int, in_channels: int, width: float = 1.0) -> Classifier:
    if (depth - 2) % 6:
        raise ConfigError(f"resnet depth must be 6n+2, got {depth}")
    widths = [_ch(w, width) for w in (16, 32, 64)]
    stem = [*_conv_bn(in_channels, widths[0]), nn.ReLU(inplace=True)]
    trunk = nn.Sequential(*stem, *_stages(BasicBlock, widths[0], widths, (depth - 2) // 6))
    return Classifier(trunk, widths[-1], num_classes)


def wide_resnet(depth: int, k: int, num_classes: int, in_channels: int,
                width: float = 1.0) -> Classifier:
    if (depth - 4) % 6:
        raise ConfigError(f"wrn depth must be 6n+4, got {depth}")
    widths = [_ch(w * k, width) for w in (16, 32, 64)]
    stem = nn.Conv2d(in_channels, _ch(16, width), 3, 1, 1, bias=False)
    blocks = _stages(WideBlock, _ch(16, width), widths, (depth - 4) // 6)
    trunk = nn.Sequential(stem, *blocks, nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=True))
    return Classifier(trunk, widths[-1], num_classes)


class _PoolIfLarger(nn.Module):
    """2x2 max-pool that leaves 1x1 maps alone, so VGG also runs on 8x8 digits."""

    def forward(self, x: Tensor) -> Tensor:
        return x if min(x.shape[-2:]) < 2 else F.max_pool2d(x, 2)


_VGG = {
    8: [[64], [128], [256], [512], [512]],
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
}


def vgg(depth: int, num_classes: int, in_channels: int, width: float = 1.0) -> Classifier:
    layers: list[nn.Module] = []
    cin = in_channels
    for i, stage in enumerate(_VGG[depth]):
        for base in stage:
            cout = _ch(base, width)
            layers += [*_conv_bn(cin, cout), nn.ReLU(inplace=True)]
            cin = cout
        if i < len(_VGG[depth]) - 1:
            layers.append(_PoolIfLarger())
    return Classifier(nn.Sequential(*layers), cin, num_classes)


def small_cnn(num_classes: int, in_channels: int, width: float = 1.0) -> Classifier:
    """Four 3x3 convs, one pool: enough for 8x8 digits, fast on a CPU."""
    c1, c2 = _ch(32, width), _ch(64, width)
    trunk = nn.Sequential(
        *_conv_bn(in_channels, c1), nn.ReLU(inplace=True),
        *_conv_bn(c1, c1), nn.ReLU(inplace=True),
        _PoolIfLarger(),
        *_conv_bn(c1, c2), nn.ReLU(inplace=True),
        *_conv_bn(c2, c2), nn.ReLU(inplace=True),
    )
    return Classifier(trunk, c2, num_classes)


Builder = Callable[[int, int, float], Classifier]
def _builders() -> dict[str, Builder]:
    table: dict[str, Builder] = {"small_cnn": small_cnn}
    for d in RESNET_DEPTHS:
        table[f"resnet{d}"] = lambda c, i, w, d=d: resnet(d, c, i, w)
    for d in VGG_DEPTHS:
        table[f"vgg{d}"] = lambda c, i, w, d=d: vgg(d, c, i, w)
    return table


ARCHS = _builders()
assert tuple(ARCHS) == NAMES and set(_VGG) == set(VGG_DEPTHS)  # the names params accept


def build_model(name: str, num_classes: int, in_channels: int, width: float = 1.0) -> Classifier:
    """Registry entry point: ``build_model("resnet20", 10, 3)``."""
    try:
        check_arch(name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    match = WRN.match(name)
    if match:
        return wide_resnet(int(match.group(1)), int(match.group(2)), num_classes, in_channels,
                           width)
    return ARCHS[name](num_classes, in_channels, width)


def load_teacher(path: Path, data_sha: str, num_classes: int, in_channels: int,
                 expected: ModelConfig, subset_seed: int | None = None) -> Any:
    """Load the frozen teacher, checking it was trained on this data (with per-seed
    subsets: on subset ``subset_seed``) with this arch."""
    if not path.is_file():
        raise CheckpointError(f"{path}: teacher model not found; run `dvc repro teacher` "
                              "first")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        meta = saved["meta"]
    except Exception as exc:
        raise CheckpointError(f"{path}: teacher model is unreadable ({type(exc).__name__})") from None
    if (meta["arch"], meta["width"]) != (expected.arch, expected.width):
        raise CheckpointError(
            f"{path}: teacher is {meta['arch']} (width {meta['width']}) but params.yaml "
            f"teacher.model is {expected.arch} (width {expected.width}); rerun `dvc repro teacher`"
        )
    if meta["data_sha256"] != data_sha:
        raise CheckpointError(f"{path}: teacher was trained on other data; rerun `dvc repro teacher`")
    if meta.get("subset_seed") != subset_seed:
        raise CheckpointError(
            f"{path}: teacher was trained on the training subset of seed "
            f"{meta.get('subset_seed')}, this run's is seed {subset_seed} (a student may only "
            "distil a teacher that saw its own images); rerun `dvc repro teacher`")
    model = build_model(meta["arch"], num_classes, in_channels, meta["width"])
    model.load_state_dict(saved["state_dict"]["student"])
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
