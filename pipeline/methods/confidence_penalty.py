"""Confidence penalty (Pereyra et al. 2017): ``CE - beta * H(p)``."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.base import Method, StepOutput, cross_entropy


def entropy(logits: Tensor) -> Tensor:
    """Batch mean of the Shannon entropy (nats) of ``softmax(logits)``."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1).mean()


class ConfidencePenalty(Method):

    def __init__(self, student: nn.Module, beta: float) -> None:
        super().__init__(student)
        self.beta = beta

    @classmethod
    def from_config(cls, cfg, make_model, teacher, variant):
        return cls(make_model(), cfg.beta)

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        logits = self.student(x)
        terms = {"ce": cross_entropy(logits, y), "confidence_penalty": -self.beta * entropy(logits)}
        return StepOutput(terms, logits)
