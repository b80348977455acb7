"""CSKD: its params section (``cs_kd:`` in params.yaml) and registry entry.

Its loss is ``pipeline/methods/cs_kd.py``.
"""

from __future__ import annotations

from pipeline.core.schema import PositiveFloat, Section, UnitFloat
from pipeline.methods import MethodInfo


class CSKDConfig(Section):
    alpha: UnitFloat = 0.5
    T: PositiveFloat = 4.0


METHOD = MethodInfo("cs_kd", "CSKD", CSKDConfig, label="CS-KD (class-wise self-distillation)",
                    rank=5, claim="CS-KD")
