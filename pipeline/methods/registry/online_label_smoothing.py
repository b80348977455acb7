"""OnlineLabelSmoothing: its params section (``online_label_smoothing:`` in params.yaml)
and registry entry.

Its loss is ``pipeline/methods/online_label_smoothing.py``.
"""

from __future__ import annotations

from typing import Literal

from pipeline.core.schema import Section, UnitFloat
from pipeline.methods import MethodInfo


class OnlineLabelSmoothingConfig(Section):
    alpha: UnitFloat = 0.5
    # authors: S starts at zeros, a class without a correct sample gets a zero row (their
    # code); identity: S starts as the identity, such a row is kept (our earlier reading)
    form: Literal["authors", "identity"] = "authors"


METHOD = MethodInfo("online_label_smoothing", "OnlineLabelSmoothing",
                    OnlineLabelSmoothingConfig, label="online label smoothing", rank=6,
                    claim="online LS")
