"""Label smoothing (Szegedy et al. 2016): target ``(1-eps) * onehot + eps / C``.

Written as its two convex parts: ``(1-eps) * CE + eps * CE(uniform, p)``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.base import Method, StepOutput, cross_entropy


class LabelSmoothing(Method):

    def __init__(self, student: nn.Module, epsilon: float) -> None:
        super().__init__(student)
        self.epsilon = epsilon

    @classmethod
    def from_config(cls, cfg, make_model, teacher, variant):
        return cls(make_model(), cfg.epsilon)

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        logits = self.student(x)
        uniform_ce = -F.log_softmax(logits, dim=1).mean(dim=1).mean()
        terms = {"ce": (1 - self.epsilon) * cross_entropy(logits, y),
                 "smoothing": self.epsilon * uniform_ce}
        return StepOutput(terms, logits)
