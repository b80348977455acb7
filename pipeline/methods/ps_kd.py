"""Progressive self-knowledge distillation (Kim et al., ICCV 2021, "PS-KD").

The model is its own teacher: each training sample's target is
``(1 - a_t) * onehot(y) + a_t * p_{t-1}(x)``, where ``p_{t-1}(x)`` is the model's
prediction for that sample in the previous epoch (kept per sample, N x C) and
``a_t = alpha_T * t / epochs`` rises linearly from 0 (paper: ``alpha_T = 0.8``).
A class-similarity target without a teacher and without explanations: the control a
reviewer asks IL for. Written in convex form: ``(1 - a_t) CE + a_t KL(p_{t-1} || p)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.base import Method, StepOutput, cross_entropy
from pipeline.methods.targets import distillation


class PSKD(Method):

    def __init__(self, student: nn.Module, alpha_T: float) -> None:
        super().__init__(student)
        self.alpha_T, self.epochs = alpha_T, 1
        self.previous = torch.empty(0)  # p_{t-1}(x) per training sample; bound before training

    @classmethod
    def from_config(cls, cfg, make_model, teacher, variant):
        return cls(make_model(), cfg.alpha_T)

    def bind(self, num_train: int, num_classes: int, epochs: int, device: Any) -> None:
        self.epochs = epochs
        self.previous = torch.zeros(num_train, num_classes, device=device)

    def extra_state(self) -> dict[str, Any]:
        return {"previous": self.previous}

    def alpha(self, epoch: int) -> float:
        return self.alpha_T * epoch / self.epochs

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        logits = self.student(x)
        a = self.alpha(epoch)
        terms = {"ce": (1 - a) * cross_entropy(logits, y)}
        if a > 0:
            q = self.previous[self.index].to(logits.dtype)
            terms["ps_kd"] = a * distillation(q, logits)
        if self.training:  # this epoch's prediction is the next epoch's target
            self.previous[self.index] = F.softmax(logits.detach().float(), dim=1)
        return StepOutput(terms, logits, {"ps_kd_alpha": torch.tensor(a)})
