"""LabelSmoothing: its params section (``label_smoothing:`` in params.yaml) and registry entry.

Its loss is ``pipeline/methods/label_smoothing.py``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipeline.core.schema import Section
from pipeline.methods import MethodInfo


class LabelSmoothingConfig(Section):
    epsilon: Annotated[float, Field(ge=0, lt=1)] = 0.1


METHOD = MethodInfo("label_smoothing", "LabelSmoothing", LabelSmoothingConfig,
                    label="label smoothing", rank=1, claim="LS", paper="better")
