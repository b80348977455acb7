"""Online label smoothing (Zhang et al., IEEE TIP 2021, "Delving deep into label smoothing").

A class x class soft-label matrix ``S``: row ``c`` is the mean predicted distribution of
the training samples of class ``c`` the model classified correctly in the previous epoch.
Samples of class ``y`` are trained towards ``S[y]``:
``(1 - alpha) CE + alpha KL(S[y] || p)`` (the paper's ``alpha`` weights the hard loss; here,
as in every method, ``alpha`` weights the soft term).

``form`` picks the initial state and the update of rows without a correct sample:
- ``authors`` (default), as the authors' published code: ``S`` starts at zeros (the first
  epoch's soft term vanishes: ``(1 - alpha) CE``), and each epoch ``S`` is rebuilt from
  zeros, so a class with no correct sample gets a zero row (that class trains on the hard
  term alone for an epoch).
- ``identity`` (our earlier reading): ``S`` starts as the identity (the first epoch is
  plain CE), and a class with no correct sample keeps its previous row.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.base import Method, StepOutput, cross_entropy
from pipeline.methods.targets import distillation


class OnlineLabelSmoothing(Method):

    def __init__(self, student: nn.Module, alpha: float, form: str = "authors") -> None:
        super().__init__(student)
        if form not in ("authors", "identity"):
            raise ValueError(f"online_label_smoothing.form: unknown '{form}'")
        self.alpha, self.form = alpha, form
        self.soft = torch.empty(0)  # S used this epoch
        self.sums = torch.empty(0)  # this epoch's accumulation: sum of p over correct samples
        self.epoch = torch.zeros((), dtype=torch.long)  # the epoch ``sums`` belongs to
        self._rolled: int | None = None  # the same, on the host

    @classmethod
    def from_config(cls, cfg, make_model, teacher, variant):
        return cls(make_model(), cfg.alpha, cfg.form)

    def bind(self, num_train: int, num_classes: int, epochs: int, device: Any) -> None:
        self.soft = (torch.eye(num_classes, device=device) if self.form == "identity" else
                     torch.zeros(num_classes, num_classes, device=device))
        self.sums = torch.zeros(num_classes, num_classes, device=device)
        self.epoch = torch.zeros((), dtype=torch.long, device=device)
        self._rolled = None

    def extra_state(self) -> dict[str, Any]:
        return {"soft": self.soft, "sums": self.sums, "epoch": self.epoch}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        super().load_extra_state(state)
        self._rolled = None  # read from the restored tensor at the next step

    def _roll(self, epoch: int) -> None:
        """At the first step of a new epoch: the finished epoch's means become ``S``.
        Which epoch ``sums`` belongs to is mirrored on the host, read from the device once
        (not every step)."""
        if self._rolled is None:
            self._rolled = int(self.epoch)
        if epoch == self._rolled:
            return
        self._rolled = epoch
        counts = self.sums.sum(dim=1, keepdim=True)
        seen = counts.squeeze(1) > 0
        if self.form == "authors":
            self.soft.zero_()
        self.soft[seen] = self.sums[seen] / counts[seen]
        self.sums.zero_()
        self.epoch.fill_(epoch)

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        logits = self.student(x)
        if self.training:
            self._roll(epoch)
        q = self.soft[y].to(logits.dtype)
        terms = {"ce": (1 - self.alpha) * cross_entropy(logits, y),
                 "ols": self.alpha * distillation(q, logits)}
        if self.training:
            p = F.softmax(logits.detach().float(), dim=1)
            correct = p.argmax(1).eq(y)
            # wrong predictions add exact zeros: fixed shapes, no boolean index per step
            self.sums.index_add_(0, y, p * correct[:, None])
        return StepOutput(terms, logits)
