"""KD: its params section (``kd:`` in params.yaml) and registry entry.

Its loss is ``pipeline/methods/kd.py``.
"""

from __future__ import annotations

from pipeline.core.schema import PositiveFloat, Section, UnitFloat
from pipeline.methods import KD_VARIANTS, MethodInfo, Teacher


class KDConfig(Section):
    alpha: UnitFloat = 0.9
    T: PositiveFloat = 4.0


METHOD = MethodInfo("kd", "KD", KDConfig, label="KD from a teacher", rank=8, short="KD",
                    teacher=Teacher.REQUIRED, variants=KD_VARIANTS, table="T3", claim="KD",
                    paper="similar")
