"""Figures written next to each run's outputs (and logged to MLflow)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def training_curves(history: Sequence[dict[str, float]], title: str) -> Figure:
    """Loss (train) and accuracy (train/val/test) against the epoch."""
    epochs = [row["epoch"] for row in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train loss")
    if "test_nll" in history[-1]:
        ax_loss.plot(epochs, [r.get("test_nll") for r in history], label="test NLL")
    ax_loss.set(xlabel="epoch", ylabel="loss (nats)", title="loss")
    ax_loss.legend()
    for key, label in (("train_acc", "train"), ("val_acc", "val"), ("test_acc", "test")):
        if key in history[-1]:
            ax_acc.plot(epochs, [r.get(key) for r in history], label=label)
    ax_acc.set(xlabel="epoch", ylabel="top-1 accuracy (%)", title="accuracy")
    ax_acc.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write a PNG atomically and close the figure."""
    from .io import atomic_write

    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)
