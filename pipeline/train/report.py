"""Per-run figures and files, written next to each run's outputs (and logged to MLflow)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def training_curves(history: Sequence[dict[str, float]], title: str) -> Figure:
    """Loss (train) and accuracy (train/val/test) against the epoch."""
    def series(key: str) -> tuple[list[float], list[float]]:  # epochs that have ``key``
        rows = [r for r in history if key in r]  # train.eval_every > 1: some epochs only
        return [r["epoch"] for r in rows], [r[key] for r in rows]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(*series("train_loss"), label="train loss")
    if "test_nll" in history[-1]:
        ax_loss.plot(*series("test_nll"), marker=".", label="test NLL")
    ax_loss.set(xlabel="epoch", ylabel="loss (nats)", title="loss")
    ax_loss.legend()
    for key, label in (("train_acc", "train"), ("val_acc", "val"), ("test_acc", "test")):
        if key in history[-1]:
            ax_acc.plot(*series(key), marker="." if key != "train_acc" else None, label=label)
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write a PNG atomically and close the figure."""
    from pipeline.core.io import atomic_write

    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)


def similarity_heatmaps(il, teacher, classes: Sequence[str], rank_corr: float | None) -> Figure:
    """IL's class-similarity matrix beside the teacher-derived one."""
    panels = [("introspective (mean self-explanation target)", il)]
    if teacher is not None:
        panels.append(("teacher (mean softmax)", teacher))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    ticks = range(len(classes)) if len(classes) <= 20 else []
    for ax, (name, matrix) in zip(axes[0], panels, strict=True):
        shown = matrix.copy()
        for i in range(len(shown)):
            shown[i, i] = float("nan")  # the diagonal dwarfs the similarity structure
        image = ax.imshow(shown, cmap="viridis")
        ax.set(title=name, xlabel="target class", ylabel="true class")
        ax.set_xticks(list(ticks), [classes[i] for i in ticks], rotation=90, fontsize=7)
        ax.set_yticks(list(ticks), [classes[i] for i in ticks], fontsize=7)
        fig.colorbar(image, ax=ax, label="mean probability (diagonal hidden)")
    title = "class similarity"
    if rank_corr is not None:
        title += f" — Spearman rank correlation (off-diagonal) = {rank_corr:.2f}"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def explanation_grid(images, labels, maps, classes: Sequence[str], explainer: str,
                     max_classes: int = 10) -> Figure:
    """One test image per row, then its explanation map for each class (columns)."""
    import torch.nn.functional as F

    n = len(images)
    shown = min(len(classes), max_classes, maps.shape[1])
    maps = maps[:, :shown].detach().float()
    if maps.ndim == 5:  # input-space explanations: (N, K, C, H, W) -> magnitude over channels
        maps = maps.abs().sum(2)
    maps = F.interpolate(maps, size=images.shape[-2:], mode="bilinear", align_corners=False)
    fig, axes = plt.subplots(n, shown + 1, figsize=(1.1 * (shown + 1), 1.1 * n + 0.6),
                             squeeze=False)
    for i in range(n):
        img = images[i].detach().float().cpu()
        img = (img - img.min()) / (img.max() - img.min() + 1e-8)
        axes[i, 0].imshow(img.permute(1, 2, 0).squeeze(-1), cmap="gray")
        axes[i, 0].set_ylabel(f"true {classes[int(labels[i])]}", fontsize=7)
        for j in range(shown):
            axes[i, j + 1].imshow(maps[i, j].cpu(), cmap="inferno")
            if i == 0:
                axes[i, j + 1].set_title(f"class {classes[j]}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{explainer} explanations of each class (columns) for one test image per class")
    fig.tight_layout()
    return fig


def write_matrix(path: str | Path, matrix, classes: Sequence[str]) -> None:
    """A class x class matrix as CSV (rows: true class)."""
    from pipeline.core.io import atomic_write_text

    header = "true_class," + ",".join(classes)
    rows = [f"{c}," + ",".join(f"{v:.6f}" for v in row) for c, row in zip(classes, matrix,
                                                                        strict=True)]
    atomic_write_text(path, "\n".join([header, *rows]) + "\n")


def read_matrix(path: str | Path):
    import pandas as pd

    return pd.read_csv(path, index_col=0).to_numpy()
