"""ConfidencePenalty: its params section (``confidence_penalty:`` in params.yaml) and registry entry.

Its loss is ``pipeline/methods/confidence_penalty.py``.
"""

from __future__ import annotations

from pipeline.core.schema import NonNegFloat, Section
from pipeline.methods import MethodInfo


class ConfidencePenaltyConfig(Section):
    beta: NonNegFloat = 0.1


METHOD = MethodInfo("confidence_penalty", "ConfidencePenalty", ConfidencePenaltyConfig,
                    label="confidence penalty", rank=2, claim="CP", paper="better")
