"""The method interface every training objective implements.

A method owns the models it trains (``self.models``; DML has two) and any frozen
helpers (a teacher). ``step`` returns named loss terms; the engine sums them, so
what goes to MLflow is exactly what is optimised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class StepOutput:
    """Loss terms of one training step and the logits used for train accuracy."""

    terms: dict[str, Tensor]
    logits: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)  # logged, not optimised

    @property
    def loss(self) -> Tensor:
        return sum(self.terms.values())  # type: ignore[return-value]


@dataclass
class Explanations:
    """Explanation maps of a few test images, one map per class: ``maps`` is (N, K, h, w)
    (class-activation maps) or (N, K, C, H, W) (input-space explanations)."""

    images: Tensor
    labels: Tensor
    maps: Tensor
    explainer: str


@dataclass
class Report:
    """What a method adds after training, as data; the runner writes, draws and logs it.

    ``similarity``: a class x class matrix (rows: true class), written as
    ``similarity.csv`` and drawn as ``similarity.png``; ``explanations`` are drawn as
    ``explanations.png``.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    similarity: Any = None
    explanations: Explanations | None = None


class Method(nn.Module):
    """Base class: one trainable ``student`` model, plain evaluation."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.models = nn.ModuleDict({"student": student})
        # the engine sets it before each step: which training samples ``x`` holds (0..N-1)
        self.index: Tensor | None = None

    @classmethod
    def from_config(cls, cfg: Any, make_model: Callable[[], nn.Module],
                    teacher: nn.Module | None, variant: str) -> Method:
        """Build from the method's params section (the registry calls every method so).

        The default fits a method with one student and no knobs (CE).
        """
        return cls(make_model())

    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        raise NotImplementedError

    def evaluated(self) -> dict[str, nn.Module]:
        """Models whose test metrics are reported (prefixed by name when several)."""
        return dict(self.models.items())

    def epoch_metrics(self) -> dict[str, float]:
        """Method-specific per-epoch figures (reset after reading); none by default."""
        return {}

    def bind(self, num_train: int, num_classes: int, epochs: int, device: Any) -> None:
        """Before training: size per-sample or per-class state (PS-KD, online LS); none here."""

    def extra_state(self) -> dict[str, Any]:
        """State beyond the models' weights that a resumed run needs (saved in checkpoints)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            getattr(self, name).copy_(value)

    def report(self, data: Any) -> Report:
        """After training: extra final metrics, matrices and figures; none by default."""
        return Report()

    def train(self, mode: bool = True) -> Method:
        self.models.train(mode)  # frozen helpers (teachers) stay in eval mode
        self.training = mode
        return self

    @property
    def student(self) -> nn.Module:
        return self.models["student"]


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y)


@contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Evaluate ``models``, then put each back in the mode it was in."""
    before = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(models, before, strict=True):
            m.train(mode)


def freeze(model: nn.Module) -> nn.Module:
    """A helper model that is never trained: eval mode, no gradients."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
