"""Teacher-free KD with a virtual teacher (Yuan et al. 2020, "Tf-KD_reg").

The virtual teacher puts ``correct_prob`` on the true class and spreads the rest
uniformly; the student distils it with the KD loss. Our reading of the design:
the hand-made distribution is the target itself (the authors' released code
additionally softens it with ``softmax(q / T)``; not reproduced here).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.base import Method, StepOutput, cross_entropy
from pipeline.methods.targets import distillation


def virtual_teacher(y: Tensor, num_classes: int, correct_prob: float) -> Tensor:
    rest = (1 - correct_prob) / (num_classes - 1)
    return F.one_hot(y, num_classes).float() * (correct_prob - rest) + rest


class TFKDVirtual(Method):

    def __init__(self, student: nn.Module, alpha: float, T: float, correct_prob: float) -> None:
        super().__init__(student)
        self.alpha, self.T, self.correct_prob = alpha, T, correct_prob

    @classmethod
    def from_config(cls, cfg, make_model, teacher, variant):
        return cls(make_model(), cfg.alpha, cfg.T, cfg.correct_prob)

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        logits = self.student(x)
        q = virtual_teacher(y, logits.shape[1], self.correct_prob).to(logits.dtype)
        terms = {"ce": (1 - self.alpha) * cross_entropy(logits, y),
                 "tf_kd": self.alpha * distillation(q, logits, self.T)}
        return StepOutput(terms, logits)
