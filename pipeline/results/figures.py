"""Figures of the tables (read by the aggregate stage only, so editing them retrains nothing)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def accuracy_bars(df, title: str, metric: str = "test_acc") -> Figure:
    """Mean top-1 per row with std error bars; CE's mean as a dashed line."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(df)), 4))
    means = df.get(f"{metric}_mean")
    if means is None:
        means = [float("nan")] * len(df)
    ax.bar(range(len(df)), means, yerr=df.get(f"{metric}_std"), capsize=4, color="#4c72b0")
    ce = df[df["method"] == "CE"]
    if len(ce) and f"{metric}_mean" in df:
        ax.axhline(float(ce[f"{metric}_mean"].iloc[0]), ls="--", color="gray", label="CE mean")
        ax.legend(loc="lower right")
    ax.set_xticks(range(len(df)), df["method"], rotation=25, ha="right", fontsize=8)
    finite = [m for m in means if m == m]
    if finite:
        spread = max(finite) - min(finite)
        ax.set_ylim(min(finite) - max(2 * spread, 2), min(100, max(finite) + max(spread, 1)))
    ax.set(ylabel="test top-1 accuracy (%)", title=title)
    fig.tight_layout()
    return fig


def accuracy_curves(curves: dict, title: str) -> Figure:
    """Test accuracy per epoch: mean over seeds, shaded ± std. ``curves``: label -> [df, ...]."""
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, frames in curves.items():
        if not frames:
            continue
        n = min(len(f) for f in frames)
        acc = np.stack([f["test_acc"].to_numpy()[:n] for f in frames])
        epochs = frames[0]["epoch"].to_numpy()[:n]
        evaluated = ~np.isnan(acc).any(0)  # train.eval_every > 1 tests some epochs only
        acc, epochs = acc[:, evaluated], epochs[evaluated]
        mean, std = acc.mean(0), acc.std(0)
        ax.plot(epochs, mean, marker="o" if len(epochs) < 20 else None, label=label)
        ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
    ax.set(xlabel="epoch", ylabel="test top-1 accuracy (%)", title=title)
    if ax.lines:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def reliability_diagrams(bins: dict) -> Figure:
    """Accuracy vs confidence per bin for each method (``bins``: label -> reliability dict)."""
    fig, axes = plt.subplots(1, max(1, len(bins)), figsize=(3.4 * max(1, len(bins)), 3.6),
                             squeeze=False)
    for ax, (label, b) in zip(axes[0], bins.items(), strict=False):
        centers = [(lo + hi) / 2 for lo, hi in zip(b["lower"], b["upper"], strict=True)]
        width = b["upper"][0] - b["lower"][0]
        ax.bar(centers, b["accuracy"], width=width, edgecolor="black", label="accuracy")
        ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
               title=f"{label} (ECE {b['ece']:.3f})")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("reliability diagrams (test set, all seeds pooled)")
    fig.tight_layout()
    return fig
