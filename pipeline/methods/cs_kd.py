"""Class-wise self-knowledge distillation (Yun et al., CVPR 2020, "CS-KD").

Each sample ``x`` is pulled towards the model's own (detached) prediction on another
training sample ``x'`` of the same class: ``(1 - alpha) CE + alpha T^2 KL(p(x'; T) || p(x; T))``.
The paper's sampler draws ``x'`` as an extra sample per batch element; our reading pairs
inside the batch (a random other sample with the same label; a sample whose class appears
once in the batch gets CE only), so every method sees the same batches and cost.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pipeline.methods.base import Method, StepOutput, cross_entropy
from pipeline.methods.targets import kl_per_sample


def same_class_partner(y: Tensor) -> Tensor:
    """For each position, another position with the same label (or -1 if none), drawn
    from torch's global RNG (seeded and checkpointed by the engine)."""
    n = y.shape[0]
    same = y[:, None].eq(y[None, :]) & ~torch.eye(n, dtype=torch.bool, device=y.device)
    scores = torch.rand(n, n, device=y.device).masked_fill(~same, -1.0)
    best, partner = scores.max(dim=1)
    return torch.where(best >= 0, partner, torch.full_like(partner, -1))


class CSKD(Method):

    def __init__(self, student: nn.Module, alpha: float, T: float) -> None:
        super().__init__(student)
        self.alpha, self.T = alpha, T

    @classmethod
    def from_config(cls, cfg, make_model, teacher, variant):
        return cls(make_model(), cfg.alpha, cfg.T)

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        logits = self.student(x)
        partner = same_class_partner(y)
        has = (partner >= 0).to(logits.dtype)
        # every sample against its partner's (itself when it has none), the unpaired
        # masked to 0 and the sum averaged over the whole batch: fixed shapes, no test
        # of the mask on the host (a boolean index would wait for the GPU every step)
        q = torch.softmax(logits.detach()[partner.clamp_min(0)] / self.T, dim=1)
        kl = (kl_per_sample(q, logits, self.T) * has).mean()
        terms = {"ce": (1 - self.alpha) * cross_entropy(logits, y),
                 "cs_kd": self.alpha * self.T * self.T * kl}
        return StepOutput(terms, logits, {"cs_kd_paired": has.mean()})
