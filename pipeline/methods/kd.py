"""Knowledge distillation (Hinton et al. 2015) and its T1 component ablation.

``(1-alpha) * CE + alpha * T^2 * KL(t' || softmax(z / T))`` where ``t'`` is the
teacher's softened output after the configured variant (see ``targets``). The
teacher is frozen, kept in eval mode, and sees the same augmented batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.base import Method, StepOutput, cross_entropy, freeze
from pipeline.methods.targets import distill


class KD(Method):
    def __init__(self, student: nn.Module, teacher: nn.Module, alpha: float, T: float,
                 variant: str = "full") -> None:
        super().__init__(student)
        self.teacher = freeze(teacher)
        self.alpha, self.T, self.variant = alpha, T, variant

    @classmethod
    def from_config(cls, cfg, make_model: Callable[[], nn.Module], teacher: nn.Module | None,
                    variant: str) -> KD:
        return cls(make_model(), teacher, cfg.alpha, cfg.T, variant)

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        with torch.no_grad():
            t = F.softmax(self.teacher(x) / self.T, dim=1)
        logits = self.student(x)
        terms = {"ce": (1 - self.alpha) * cross_entropy(logits, y),
                 "kd": self.alpha * distill(t, logits, y, self.variant, self.T)}
        return StepOutput(terms, logits)
