"""Standard training: cross-entropy with the one-hot label."""

from __future__ import annotations

from torch import Tensor

from pipeline.methods.base import Method, StepOutput, cross_entropy


class CE(Method):

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        logits = self.student(x)
        return StepOutput({"ce": cross_entropy(logits, y)}, logits)
