"""Progressive self-knowledge distillation (Kim et al., ICCV 2021, "PS-KD").

The model is its own teacher: each training sample's target is
``(1 - a_t) * onehot(y) + a_t * p_{t-1}(x)``, where ``p_{t-1}(x)`` is the model's
prediction for that sample in the previous epoch (kept per sample, N x C) and
``a_t = alpha_T * (t + 1) / epochs`` for epochs ``t = 0 .. epochs - 1``, so the last epoch
weighs its previous prediction by ``alpha_T`` (paper: 0.8). As in the authors' code, a
sample not yet predicted (the first epoch) is its own one-hot label, so epoch 0 is CE.
A class-similarity target without a teacher and without explanations: the control a
reviewer asks IL for. Written in convex form: ``(1 - a_t) CE + a_t KL(p_{t-1} || p)``,
the authors' soft-target cross-entropy up to a constant (the target's entropy).
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
        """The weight of the previous prediction in epoch ``epoch`` (0-based)."""
        return self.alpha_T * (epoch + 1) / self.epochs

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        logits = self.student(x)
        a = self.alpha(epoch)
        terms = {"ce": (1 - a) * cross_entropy(logits, y)}
        if a > 0:
            q = self.previous[self.index]
            unseen = q.sum(dim=1, keepdim=True) == 0  # no prediction yet: the label itself
            q = torch.where(unseen, F.one_hot(y, q.shape[1]).to(q.dtype), q)
            terms["ps_kd"] = a * distillation(q.to(logits.dtype), logits)
        if self.training:  # this epoch's prediction is the next epoch's target
            self.previous[self.index] = F.softmax(logits.detach().float(), dim=1)
        return StepOutput(terms, logits, {"ps_kd_alpha": torch.tensor(a)})
