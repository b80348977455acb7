"""Deep mutual learning (Zhang et al. 2018): two peers teach each other.

Each peer minimises ``(1-alpha) * CE + alpha * KL(p_other || p_self)`` with the
other peer's output detached (``form="convex"``, the scale every table uses), or
the original ``CE + KL`` (``form="original"``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.base import Method, StepOutput, cross_entropy
from pipeline.methods.targets import distillation


class DML(Method):

    def __init__(self, peer0: nn.Module, peer1: nn.Module, alpha: float,
                 form: str = "convex") -> None:
        super().__init__(peer0)
        self.models = nn.ModuleDict({"peer0": peer0, "peer1": peer1})
        self.ce_weight, self.kl_weight = (1 - alpha, alpha) if form == "convex" else (1.0, 1.0)

    @classmethod
    def from_config(cls, cfg, make_model, teacher, variant):
        return cls(make_model(), make_model(), cfg.alpha, cfg.form)

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        z = [self.models["peer0"](x), self.models["peer1"](x)]
        terms: dict[str, Tensor] = {}
        for i in (0, 1):
            other = F.softmax(z[1 - i].detach(), dim=1)
            terms[f"peer{i}_ce"] = self.ce_weight * cross_entropy(z[i], y)
            terms[f"peer{i}_kl"] = self.kl_weight * distillation(other, z[i])
        return StepOutput(terms, z[0])

    @property
    def student(self) -> nn.Module:
        return self.models["peer0"]
