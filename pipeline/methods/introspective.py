"""Introspective learning (IL): distil the network's own online self-explanations.

Our interpretation of the abstract (every choice is a key of ``introspective``):
each step explains the current model's logit ``z_c`` for every class (or the
``top_k`` highest-scoring ones plus the true class), compares each class's
explanation with the true class's, and turns the similarities ``s`` into a soft
target ``q``:

* ``softmax``: ``q = softmax(s / tau)`` (``s_y = 1`` is the largest);
* ``fixed_gt``: ``q_y = gt_prob``, the rest ``(1 - gt_prob) * softmax(s_non_gt / tau)``.

The T4 controls (``uniform_non_gt``, ``shuffled_non_gt``) are applied to ``q``
with the KD ablation's code. The loss has KD's convex form,
``(1 - alpha) CE + alpha T^2 KL(q || softmax(z / T))``, with ``q`` detached and
``alpha = 0`` during the first ``warmup_epochs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.methods.base import (
    Explanations,
    Method,
    Report,
    StepOutput,
    cross_entropy,
    eval_mode,
)
from pipeline.methods.explain import gradcam_linear, input_gradients, similarity
from pipeline.methods.targets import distillation, non_gt_transform

if TYPE_CHECKING:
    from pipeline.methods.registry.introspective import IntrospectiveConfig


class Introspective(Method):

    def __init__(self, student: nn.Module, cfg: IntrospectiveConfig, variant: str = "full") -> None:
        super().__init__(student)
        self.cfg, self.variant = cfg, variant
        self._sums: dict[str, Any] = {"target_entropy": 0.0, "target_gt_prob": 0.0}
        self._count = 0

    @classmethod
    def from_config(cls, cfg: IntrospectiveConfig, make_model, teacher, variant: str):
        return cls(make_model(), cfg, variant)  # no teacher: IL learns from itself

    # ------------------------------------------------------------ explanations
    def explained_classes(self, logits: Tensor, y: Tensor) -> Tensor | None:
        """``None`` (all classes) or ``(N, 1 + top_k)``: the true class first."""
        k = self.cfg.top_k
        if k is None or k + 1 >= logits.shape[1]:
            return None
        masked = logits.detach().scatter(1, y[:, None], float("-inf"))
        return torch.cat([y[:, None], masked.topk(k, dim=1).indices], dim=1)

    def explain(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Logits of the (single) forward pass, class maps ``(N, K, ...)``, explained classes."""
        model = self.student
        if self.cfg.explainer == "gradcam":
            logits, fmap = model.forward_features(x)
            classes = self.explained_classes(logits, y)
            with torch.autocast(x.device.type, enabled=False):  # amp: the maps in fp32
                maps = gradcam_linear(fmap.float(), model.fc.weight.float(), classes)
            return logits, maps, classes
        x = x.detach().requires_grad_(True)
        logits = model(x)
        classes = self.explained_classes(logits, y)
        maps = input_gradients(logits, x, classes).float()  # x is fp32: so are its gradients
        if self.cfg.explainer == "gradient_x_input":
            maps = maps * x.detach().unsqueeze(1)
        return logits, maps.detach(), classes

    def soft_targets(self, maps: Tensor, classes: Tensor | None, y: Tensor,
                     num_classes: int) -> Tensor:
        """Similarity to the true class's map -> distribution over all classes (detached)."""
        if classes is None:
            reference = maps[torch.arange(len(y), device=y.device), y]
            full_classes = torch.arange(num_classes, device=y.device).expand(len(y), -1)
        else:
            reference, full_classes = maps[:, 0], classes
        sims = similarity(maps, reference, self.cfg.similarity)
        scores = torch.full((len(y), num_classes), float("-inf"), device=maps.device)
        scores = scores.scatter(1, full_classes, sims.to(scores.dtype)) / self.cfg.tau
        if self.cfg.target_mode == "softmax":
            return F.softmax(scores, dim=1).detach()
        non_gt = F.softmax(scores.scatter(1, y[:, None], float("-inf")), dim=1)
        q = (1 - self.cfg.gt_prob) * non_gt
        return q.scatter(1, y[:, None], self.cfg.gt_prob).detach()

    # ------------------------------------------------------------ training
    def step(self, x: Tensor, y: Tensor, epoch: int) -> StepOutput:
        cfg = self.cfg
        if epoch < cfg.warmup_epochs or cfg.alpha == 0:
            logits = self.student(x)
            zero = logits.new_zeros(())
            return StepOutput({"ce": cross_entropy(logits, y), "introspective": zero}, logits)
        logits, maps, classes = self.explain(x, y)
        with torch.autocast(x.device.type, enabled=False):  # amp: the targets in fp32
            q = self.soft_targets(maps.float(), classes, y, logits.shape[1])
        q = non_gt_transform(q, y, self.variant)
        self._record(q, y)
        terms = {"ce": (1 - cfg.alpha) * cross_entropy(logits, y),
                 "introspective": cfg.alpha * distillation(q, logits, cfg.T)}
        return StepOutput(terms, logits)

    def _record(self, q: Tensor, y: Tensor) -> None:
        """Running sums on the device (read once per epoch, not every step)."""
        entropy = -torch.xlogy(q, q).sum(dim=1)
        self._sums["target_entropy"] += entropy.detach().double().sum()
        self._sums["target_gt_prob"] += q.gather(1, y[:, None]).detach().double().sum()
        self._count += len(y)

    def epoch_metrics(self) -> dict[str, float]:
        if not self._count:
            return {}
        out = {k: float(v) / self._count for k, v in self._sums.items()}
        self._sums = dict.fromkeys(self._sums, 0.0)
        self._count = 0
        return out

    # ------------------------------------------------------------ report
    def similarity_matrix(self, x: Tensor, y: Tensor, num_classes: int,
                          batch_size: int = 256) -> np.ndarray:
        """Mean (untransformed) self-explanation target per true class, eval mode."""
        sums = torch.zeros(num_classes, num_classes, dtype=torch.float64)
        with eval_mode(self.student), torch.enable_grad():
            for i in range(0, len(y), batch_size):
                xb, yb = x[i:i + batch_size], y[i:i + batch_size]
                _, maps, classes = self.explain(xb, yb)
                q = self.soft_targets(maps, classes, yb, num_classes).double().cpu()
                sums.index_add_(0, yb.cpu(), q)
        counts = torch.bincount(y.cpu(), minlength=num_classes).clamp_min(1).double()
        return (sums / counts[:, None]).numpy()

    def report(self, data: Any) -> Report:
        """IL's learned class similarity (test split) and one explanation per class.

        The comparison with the teacher's similarity is the aggregate stage's: IL never
        depends on the teacher.
        """
        from pipeline.methods.analysis import similarity_report

        x, y = data.batch("test", slice(None))
        classes = data.meta["classes"]
        il = self.similarity_matrix(x, y, len(classes))
        shown = [int((y == c).nonzero()[0]) for c in range(len(classes)) if (y == c).any()][:10]
        with eval_mode(self.student), torch.enable_grad():
            _, maps, _ = self.explain(x[shown], y[shown])
        return Report(metrics=similarity_report(il, None, data.meta.get("groups")),
                      similarity=il,
                      explanations=Explanations(x[shown], y[shown], maps, self.cfg.explainer))
