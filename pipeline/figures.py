"""Every figure the pipeline draws, in one place.

Methods and stages return data (histories, matrices, explanation maps, tables);
the runner (per-run figures) and the results layer (table figures) call these to
draw it, so nothing below ``pipeline/figures.py`` imports matplotlib. Each
function returns a Figure; :func:`save_figure` writes it atomically and closes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def save_figure(fig: Figure, path: str | Path) -> None:
    """Write a PNG atomically and close the figure."""
    from pipeline.core.io import atomic_write

    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))
    plt.close(fig)


# --------------------------------------------------------------- per run (the runner)
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


def note_figure(title: str, text: str) -> Figure:
    """A run that was not trained: its curves' place says why."""
    fig = plt.figure(figsize=(6, 1.6))
    fig.text(0.5, 0.62, title, ha="center", va="center", fontsize=12)
    fig.text(0.5, 0.3, text, ha="center", va="center", fontsize=10, wrap=True)
    return fig


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
    """One test image per row, then its explanation map for each class (columns).

    Drawn as one mosaic image on one axes: ~100 small axes cost about a second of
    matplotlib layout per IL run, the mosaic a few milliseconds. Each tile is scaled to
    its own range, as separate ``imshow`` panels would be.
    """
    import numpy as np
    import torch.nn.functional as F
    from matplotlib import colormaps

    n, size = len(images), tuple(images.shape[-2:])
    shown = min(len(classes), max_classes, maps.shape[1])
    maps = maps[:, :shown].detach().float().cpu()
    if maps.ndim == 5:  # input-space explanations: (N, K, C, H, W) -> magnitude over channels
        maps = maps.abs().sum(2)
    maps = F.interpolate(maps, size=size, mode="bilinear", align_corners=False).numpy()
    pics = images.detach().float().cpu().permute(0, 2, 3, 1).numpy()  # N, H, W, C

    def unit(a: np.ndarray) -> np.ndarray:
        return (a - a.min()) / (a.max() - a.min() + 1e-8)

    gap = max(1, size[0] // 8)
    h, w = size[0] + gap, size[1] + gap
    mosaic = np.ones((n * h - gap, (shown + 1) * w - gap, 3))  # white between tiles
    for i in range(n):
        pic = unit(pics[i])
        tiles = [pic.repeat(3, -1) if pic.shape[-1] == 1 else pic[..., :3]]
        tiles += [colormaps["inferno"](unit(maps[i, j]))[..., :3] for j in range(shown)]
        for j, tile in enumerate(tiles):
            mosaic[i * h:i * h + size[0], j * w:j * w + size[1]] = tile
    fig, ax = plt.subplots(figsize=(1.1 * (shown + 1), 1.1 * n + 0.6))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([j * w + size[1] / 2 - 0.5 for j in range(shown + 1)],
                  ["image", *(f"class {classes[j]}" for j in range(shown))], fontsize=7)
    ax.set_yticks([i * h + size[0] / 2 - 0.5 for i in range(n)],
                  [f"true {classes[int(labels[i])]}" for i in range(n)], fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{explainer} explanations of each class (columns) for one test image "
                 "per class", fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------- tables (the aggregate stage)
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


def response_surface(df, knobs: Sequence[str], label: str, reference: str) -> Figure:
    """A method's validation top-1 over two knobs against the reference's: left, the paired
    Δ per point as a heat map (per-point interval below it; * where it excludes 0); right,
    accuracy against the first knob, a line per value of the second, and the reference's
    mean ± sd as a band. Values are placed in order, so choices (an explainer) work too."""
    import numpy as np

    xs, ys = list(dict.fromkeys(df[knobs[0]])), list(dict.fromkeys(df[knobs[1]]))
    grid = np.full((len(ys), len(xs)), np.nan)
    fig, (ax_map, ax_lines) = plt.subplots(1, 2, figsize=(12, 4.6))
    limit = max(float(np.nanmax(np.abs(df["d_val_acc"]))), 0.5) if df["d_val_acc"].notna().any() \
        else 1.0
    for _, r in df.iterrows():
        i, j = ys.index(r[knobs[1]]), xs.index(r[knobs[0]])
        grid[i, j] = r["d_val_acc"]
        text = f"{r['d_val_acc']:+.1f}"
        if r["d_ci_low"] == r["d_ci_low"]:  # an interval (2+ paired seeds)
            star = "*" if r["d_ci_low"] > 0 or r["d_ci_high"] < 0 else ""
            text += f"{star}\n[{r['d_ci_low']:+.1f}, {r['d_ci_high']:+.1f}]"
        dark = abs(r["d_val_acc"]) > 0.6 * limit  # white text on the strong colours
        ax_map.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    image = ax_map.imshow(grid, cmap="RdBu", vmin=-limit, vmax=limit, origin="lower",
                          aspect="auto")
    ax_map.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax_map.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax_map.set(xlabel=knobs[0], ylabel=knobs[1],
               title=f"Δ val top-1 vs {reference} (paired, points) [95% CI]")
    fig.colorbar(image, ax=ax_map, label=f"{label} − {reference} (points)")
    for k, y in enumerate(ys):
        rows = df[df[knobs[1]] == y]
        shift = 0.06 * (k - (len(ys) - 1) / 2)  # side by side, so the error bars stay apart
        ax_lines.errorbar([xs.index(v) + shift for v in rows[knobs[0]]], rows["val_acc"],
                          yerr=rows["val_acc_sd"], marker="o", capsize=3,
                          label=f"{knobs[1]} {y}")
    if "reference_val_acc" in df:
        mean, sd = float(df["reference_val_acc"].iloc[0]), float(df["reference_val_acc_sd"].iloc[0])
        ax_lines.axhline(mean, color="black", ls="--", label=f"{reference} mean")
        if sd == sd:
            ax_lines.axhspan(mean - sd, mean + sd, color="gray", alpha=0.25,
                             label=f"{reference} ± sd (seeds)")
    ax_lines.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax_lines.set(xlabel=knobs[0], ylabel="validation top-1 (%)",
                 title=f"{label}: mean ± sd over seeds")
    ax_lines.legend(fontsize=7)
    fig.suptitle(f"Response surface of {label} (validation split)")
    fig.tight_layout()
    return fig
