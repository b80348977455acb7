"""DML: its params section (``dml:`` in params.yaml) and registry entry.

Its loss is ``pipeline/methods/dml.py``.
"""

from __future__ import annotations

from typing import Literal

from pipeline.core.schema import Section, UnitFloat
from pipeline.methods import MethodInfo


class DMLConfig(Section):
    alpha: UnitFloat = 0.5
    form: Literal["convex", "original"] = "convex"


METHOD = MethodInfo("dml", "DML", DMLConfig, label="DML (2 peers)", rank=7, table="T3",
                    claim="DML", paper="similar")
