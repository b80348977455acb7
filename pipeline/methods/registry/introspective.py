"""Introspective: its params section (``introspective:`` in params.yaml) and registry entry.

Its loss is ``pipeline/methods/introspective.py``.
"""

from __future__ import annotations

from typing import Literal

from pipeline.core.schema import NonNegInt, PositiveFloat, PositiveInt, Probability, Section, UnitFloat
from pipeline.methods import NON_GT_VARIANTS, MethodInfo


class IntrospectiveConfig(Section):
    explainer: Literal["gradcam", "input_gradient", "gradient_x_input"] = "gradcam"
    similarity: Literal["cosine", "pearson"] = "cosine"
    target_mode: Literal["softmax", "fixed_gt"] = "fixed_gt"
    tau: PositiveFloat = 0.1
    gt_prob: Probability = 0.9
    alpha: UnitFloat = 0.5
    T: PositiveFloat = 1.0
    warmup_epochs: NonNegInt = 0
    top_k: PositiveInt | None = None


METHOD = MethodInfo("introspective", "Introspective", IntrospectiveConfig, label="IL", rank=9,
                    short="IL", variants=NON_GT_VARIANTS)
