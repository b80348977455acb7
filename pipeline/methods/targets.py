"""Soft-target math shared by KD and introspective learning.

* ``non_gt_transform``: the T1/T4 controls that keep the true-class probability
  and change only the non-ground-truth part (uniform = no class similarity, same
  mass; shuffled = same values, similarity destroyed).
* ``kl_to_logits``: ``KL(q || softmax(z / T))``; ``distillation`` is the
  ``T^2``-scaled term every distilling method (KD, TF-KD, DML, IL) optimises.
* ``tckd`` / ``nckd``: the decomposition of Zhao et al. (2022, "Decoupled KD"):
  ``KL(t||p) = KL(b_t||b_p) + (1 - t_y) * KL(t_hat||p_hat)``.

Randomness (shuffling) uses torch's global RNG, which the engine seeds and
checkpoints, so runs stay reproducible and resumable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.methods import NON_GT_VARIANTS


def gt_mask(y: Tensor, num_classes: int) -> Tensor:
    return F.one_hot(y, num_classes).bool()


def non_gt_indices(y: Tensor, num_classes: int) -> Tensor:
    """``(N, C-1)`` indices of each row's non-ground-truth classes, ascending."""
    mask = gt_mask(y, num_classes).to(torch.int8)
    return torch.argsort(mask, dim=1, stable=True)[:, : num_classes - 1]


def non_gt_transform(t: Tensor, y: Tensor, variant: str) -> Tensor:
    """Apply a non-GT control to target distributions ``t`` (rows sum to 1)."""
    if variant == "full":
        return t
    num_classes = t.shape[1]
    idx = non_gt_indices(y, num_classes)
    values = t.gather(1, idx)
    if variant == "uniform_non_gt":
        values = values.mean(dim=1, keepdim=True).expand_as(values)
    elif variant == "shuffled_non_gt":
        # drawn where the values live (the CPU's generator on a CPU, as before): a CPU
        # draw copied to a GPU would cost a host-to-device copy every step
        perm = torch.argsort(torch.rand(values.shape, device=values.device), dim=1)
        values = values.gather(1, perm)
    else:
        raise ValueError(f"unknown non-GT variant '{variant}' (known: {NON_GT_VARIANTS})")
    return t.scatter(1, idx, values)


def kl_per_sample(q: Tensor, logits: Tensor, T: float = 1.0) -> Tensor:
    """``KL(q_i || softmax(logits_i / T))`` for each sample ``i``; ``0 log 0 = 0``."""
    log_p = F.log_softmax(logits / T, dim=1)
    return (torch.xlogy(q, q) - q * log_p).sum(dim=1)


def kl_to_logits(q: Tensor, logits: Tensor, T: float = 1.0) -> Tensor:
    """Batch mean of ``KL(q || softmax(logits / T))``; ``0 log 0 = 0``."""
    return kl_per_sample(q, logits, T).mean()


def distillation(q: Tensor, logits: Tensor, T: float = 1.0) -> Tensor:
    """``T^2 * KL(q || softmax(logits / T))``: the ``T^2`` keeps gradients at CE's scale."""
    return T * T * kl_to_logits(q, logits, T)


def _binary(p: Tensor, y: Tensor) -> Tensor:
    p_y = p.gather(1, y[:, None])
    return torch.cat([p_y, 1 - p_y], dim=1)


def tckd(t: Tensor, logits: Tensor, y: Tensor, T: float = 1.0) -> Tensor:
    """Target-class KD: KL between the binary (true, rest) distributions."""
    b_t = _binary(t, y)
    b_p = _binary(F.softmax(logits / T, dim=1), y).clamp_min(1e-12)
    return (torch.xlogy(b_t, b_t) - b_t * b_p.log()).sum(dim=1).mean()


def nckd(t: Tensor, logits: Tensor, y: Tensor, T: float = 1.0) -> Tensor:
    """Non-target-class KD: KL between the renormalised non-GT distributions."""
    idx = non_gt_indices(y, t.shape[1])
    t_hat = t.gather(1, idx)
    t_hat = t_hat / t_hat.sum(dim=1, keepdim=True).clamp_min(1e-12)
    log_p_hat = F.log_softmax((logits / T).gather(1, idx), dim=1)
    return (torch.xlogy(t_hat, t_hat) - t_hat * log_p_hat).sum(dim=1).mean()


def distill(t: Tensor, logits: Tensor, y: Tensor, variant: str, T: float) -> Tensor:
    """``T^2`` times the variant's KL term (``t`` is already the softened target)."""
    if variant == "target_only":
        return T * T * tckd(t, logits, y, T)
    if variant == "non_target_only":
        return T * T * nckd(t, logits, y, T)
    return distillation(non_gt_transform(t, y, variant), logits, T)
