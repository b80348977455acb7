"""PSKD: its params section (``ps_kd:`` in params.yaml) and registry entry.

Its loss is ``pipeline/methods/ps_kd.py``.
"""

from __future__ import annotations

from pipeline.core.schema import Section, UnitFloat
from pipeline.methods import MethodInfo


class PSKDConfig(Section):
    alpha_T: UnitFloat = 0.8  # weight of the previous-epoch prediction at the last epoch


METHOD = MethodInfo("ps_kd", "PSKD", PSKDConfig, label="PS-KD (self-distillation)", rank=4,
                    claim="PS-KD")
