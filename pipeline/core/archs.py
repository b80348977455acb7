"""The architecture names ``teacher.model.arch`` / ``student.model.arch`` may hold, without
torch: validating ``params.yaml`` must not import it (``pipeline/core/models.py`` builds them)."""

from __future__ import annotations

import re

RESNET_DEPTHS = (8, 14, 20, 32, 44, 56, 110)  # CIFAR ResNets (He et al. 2016): 6n + 2
VGG_DEPTHS = (8, 11, 13)
WRN = re.compile(r"^wrn[-_](\d+)[-_](\d+)$")  # wide ResNets: wrn-<6n+4>-<k>
NAMES = ("small_cnn", *(f"resnet{d}" for d in RESNET_DEPTHS), *(f"vgg{d}" for d in VGG_DEPTHS))


def check_arch(name: str) -> None:
    """Raise ``ValueError`` (pydantic turns it into a keyed message) for unknown names."""
    if name in NAMES:
        return
    match = WRN.match(name)
    if match and (int(match.group(1)) - 4) % 6 == 0:
        return
    known = ", ".join([*NAMES, "wrn-<6n+4>-<k>"])
    raise ValueError(f"unknown architecture '{name}' (known: {known})")
