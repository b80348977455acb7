"""Teacher-free KD with a virtual teacher (Yuan et al., CVPR 2020, "Tf-KD_reg").

The virtual teacher ``p^d`` puts ``correct_prob`` on the true class and spreads the
rest uniformly. The published loss (their Sec. 4, Tf-KD_reg) is
``(1 - alpha) CE + alpha * D_KL(p^d_T || p_T)`` where ``p^d_T = softmax(p^d / T)``
softens the hand-made distribution like a teacher's logits and ``p_T = softmax(z / T)``;
we add KD's usual ``T^2`` so its gradient keeps CE's scale. (Their released code scales
with a ``multiplier`` instead and leaves the student at ``T = 1``.)

``soften_teacher: false`` distils ``p^d`` itself and is allowed only at ``T = 1``: then the
loss is label smoothing with ``epsilon = alpha * C (1 - correct_prob) / (C - 1)`` up to a
constant. Distilling an unsoftened ``p^d`` at ``T > 1`` would pull the logits to ``T`` times
CE's scale, the opposite of a regulariser.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.base import Method, StepOutput, cross_entropy
from pipeline.methods.targets import distillation


def virtual_teacher(y: Tensor, num_classes: int, correct_prob: float) -> Tensor:
    """``p^d``: ``correct_prob`` on the true class, the rest spread uniformly."""
    rest = (1 - correct_prob) / (num_classes - 1)
    return F.one_hot(y, num_classes).float() * (correct_prob - rest) + rest


class TFKDVirtual(Method):

    def __init__(self, student: nn.Module, alpha: float, T: float, correct_prob: float,
                 soften_teacher: bool = True) -> None:
        super().__init__(student)
        self.alpha, self.T, self.correct_prob = alpha, T, correct_prob
        self.soften_teacher = soften_teacher

    @classmethod
    def from_config(cls, cfg, make_model, teacher, variant):
        return cls(make_model(), cfg.alpha, cfg.T, cfg.correct_prob, cfg.soften_teacher)

    def target(self, y: Tensor, num_classes: int) -> Tensor:
        q = virtual_teacher(y, num_classes, self.correct_prob)
        return F.softmax(q / self.T, dim=1) if self.soften_teacher else q

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        logits = self.student(x)
        q = self.target(y, logits.shape[1]).to(logits.dtype)
        terms = {"ce": (1 - self.alpha) * cross_entropy(logits, y),
                 "tf_kd": self.alpha * distillation(q, logits, self.T)}
        return StepOutput(terms, logits)
