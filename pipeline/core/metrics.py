"""Evaluation metrics reported in every table: top-1/top-5, NLL, ECE (15 bins)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

ECE_BINS = 15
TOP5_MIN_CLASSES = 10


def expected_calibration_error(probs: Tensor, labels: Tensor, n_bins: int = ECE_BINS) -> float:
    """Guo et al. (2017): sum over equal-width confidence bins of |acc - conf| * share.

    Bins are ``(lo, hi]`` over the max-probability confidence.
    """
    conf, pred = probs.max(dim=1)
    correct = pred.eq(labels).double()
    conf = conf.double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=probs.device)
    ece = torch.zeros((), dtype=torch.float64, device=probs.device)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            share = in_bin.double().mean()
            ece += share * (correct[in_bin].mean() - conf[in_bin].mean()).abs()
    return float(ece)


def topk_accuracy(logits: Tensor, labels: Tensor, k: int) -> float:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float(top.eq(labels[:, None]).any(dim=1).double().mean())


def classification_metrics(logits: Tensor, labels: Tensor, prefix: str = "") -> dict[str, float]:
    """``acc``, ``nll``, ``ece`` and, for ``C >= 10``, ``top5`` (accuracies in percent)."""
    logits = logits.double()
    out = {
        f"{prefix}acc": 100.0 * topk_accuracy(logits, labels, 1),
        f"{prefix}nll": float(F.cross_entropy(logits, labels)),
        f"{prefix}ece": expected_calibration_error(logits.softmax(dim=1), labels),
    }
    if logits.shape[1] >= TOP5_MIN_CLASSES:
        out[f"{prefix}top5"] = 100.0 * topk_accuracy(logits, labels, 5)
    return out


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = ECE_BINS) -> dict[str, list]:
    """Per confidence bin ``(lo, hi]``: sample count, mean confidence, accuracy (for diagrams)."""
    conf, pred = probs.double().max(dim=1)
    correct = pred.eq(labels).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    out: dict[str, list] = {"lower": [], "upper": [], "count": [], "confidence": [], "accuracy": []}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = ((conf > lo) & (conf <= hi)).cpu()
        n = int(in_bin.sum())
        out["lower"].append(float(lo))
        out["upper"].append(float(hi))
        out["count"].append(n)
        out["confidence"].append(float(conf.cpu()[in_bin].mean()) if n else 0.0)
        out["accuracy"].append(float(correct.cpu()[in_bin].mean()) if n else 0.0)
    return out


def pool_reliability(parts: Sequence[dict[str, list]]) -> dict[str, list]:
    """The bins of several models' :func:`reliability_bins` pooled, as if their predictions
    were one set: counts add up, confidence and accuracy are count-weighted means."""
    import numpy as np

    counts = np.sum([p["count"] for p in parts], axis=0)
    safe = np.maximum(counts, 1)  # an empty bin stays 0
    out: dict[str, list] = {"lower": parts[0]["lower"], "upper": parts[0]["upper"],
                            "count": counts.tolist()}
    for key in ("accuracy", "confidence"):
        weighted = np.sum([np.asarray(p[key]) * np.asarray(p["count"]) for p in parts], axis=0)
        out[key] = (weighted / safe).tolist()
    return out
