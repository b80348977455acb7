"""TFKDVirtual: its params section (``tf_kd_virtual:`` in params.yaml) and registry entry.

Its loss is ``pipeline/methods/tf_kd_virtual.py``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from pipeline.core.schema import PositiveFloat, Section, UnitFloat
from pipeline.methods import MethodInfo


class TFKDVirtualConfig(Section):
    alpha: UnitFloat = 0.5
    T: PositiveFloat = 4.0
    correct_prob: Annotated[float, Field(gt=0, le=1)] = 0.9
    soften_teacher: bool = True  # softmax(p^d / T) as Yuan et al.; false only with T = 1

    @model_validator(mode="after")
    def _unsoftened_only_at_t1(self) -> TFKDVirtualConfig:
        if not self.soften_teacher and self.T != 1:
            raise ValueError(f"T: {self.T} with soften_teacher: false distils the hand-made "
                             "distribution at a temperature (logits pushed to T x CE's scale); "
                             "use T: 1 or soften_teacher: true")
        return self


METHOD = MethodInfo("tf_kd_virtual", "TFKDVirtual", TFKDVirtualConfig,
                    label="teacher-free KD (virtual teacher)", rank=3, claim="Tf-KD")
