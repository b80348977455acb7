"""The one training engine: every method (CE, KD, DML, IL, ...) trains through ``fit``.

This file is the loop: the epochs, the steps, the learning rate (a pure function of the
epoch, so resuming needs no scheduler object), divergence and stop checks. Around it:
``device`` (the device, the fast path, the data on the device), ``evaluation`` (the
metrics), ``state`` (the training state and its checkpoint, written after every epoch and
at a stop, from which ``fit`` continues bit for bit on CPU) and ``stop`` (signals). Their
names are re-exported here, the engine's one public face.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from pipeline.core.errors import ConfigError, TrainingDiverged
from pipeline.core.sections import TrainConfig
from pipeline.methods.base import Method
from pipeline.train import distributed
from pipeline.train.augment import random_crop_flip
from pipeline.train.device import (
    PLAIN,
    Accel,
    DeviceData,
    accel_for,
    configure_runtime,
    prepare_models,
    seed_everything,
    select_device,
)
from pipeline.train.evaluation import evaluate, predict
from pipeline.train.state import (
    CHECKPOINT_VERSION,
    Checkpoint,
    Position,
    TrainState,
    _floats,
    make_sgd,
)
from pipeline.train.stop import StopRequest

__all__ = ["CHECKPOINT_VERSION", "Accel", "Checkpoint", "DeviceData", "Position",
           "StopRequest", "TrainState", "accel_for", "configure_runtime", "epoch_steps",
           "evaluate", "fit", "lr_at", "make_sgd", "predict", "prepare_models",
           "seed_everything", "select_device", "train_epoch"]


def epoch_steps(n: int, batch_size: int, static_shapes: bool) -> tuple[int, int]:
    """Steps per epoch and the samples they train on: every sample, or under static shapes
    only full batches (the dropped remainder differs each epoch: the order is reshuffled)."""
    if static_shapes and n >= batch_size:
        return n // batch_size, n // batch_size * batch_size
    return math.ceil(n / batch_size), n


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate for 0-based ``epoch`` (milestones are fractions of ``epochs``)."""
    sched = cfg.schedule
    if sched.name == "constant":
        return cfg.lr
    if sched.name == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / cfg.epochs))
    passed = sum(epoch >= round(m * cfg.epochs) for m in sched.milestones)
    return cfg.lr * sched.gamma**passed


EpochCallback = Callable[[dict[str, float]], None]


def fit(
    method: Method,
    data: DeviceData,
    cfg: TrainConfig,
    seed: int,
    *,
    checkpoint: Checkpoint | None = None,
    resume: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
    label: str = "train",
    accel: Accel = PLAIN,
) -> list[dict[str, float]]:
    """Train ``method`` for ``cfg.epochs``; return one metrics row per epoch.

    ``resume`` is a state from :meth:`Checkpoint.load`; ``extra`` is stored in
    every checkpoint as-is. ``on_epoch`` receives each finished epoch's row.
    """
    prepare_models(method, data.device, accel)
    method.bind(data.size("train"), data.num_classes, cfg.epochs, data.device)
    if method.extra_state() and distributed.rank_world()[1] > 1:
        raise ConfigError(f"{label}: {type(method).__name__} keeps per-sample/per-class state "
                          "that torchrun ranks would not share; train it in one process")
    state = TrainState.create(method, cfg, seed, data.device, accel, extra)
    position = state.restore(resume, data.device) if resume is not None else None
    if resume is not None and state.epoch < cfg.epochs:
        print(f"[ilkd] {label}: resuming after epoch {state.epoch}/{cfg.epochs}")
    rank, _ = distributed.rank_world()
    save = checkpoint.save if checkpoint is not None and rank == 0 else None
    with StopRequest() as stop:
        for epoch in range(state.epoch, cfg.epochs):
            tic = time.perf_counter()
            position = position or Position.new_epoch(data.size("train"), state.generator,
                                                      data.device)
            lr = train_epoch(state, data, cfg, epoch, position, stop, save, accel, progress, label)
            scored = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
            row = {"epoch": epoch + 1, "lr": lr, **_floats(position.sums),
                   "train_acc": 100.0 * float(position.correct) / epoch_steps(
                       data.size("train"), cfg.batch_size, accel.static_shapes)[1],
                   **method.epoch_metrics(),
                   **(evaluate(method, data, cfg.eval_batch_size, accel) if scored else {})}
            row["epoch_time_s"] = time.perf_counter() - tic
            state.history.append(row)
            state.epoch, position = epoch + 1, None
            if rank == 0:
                if save:
                    save(state.snapshot())
                if on_epoch is not None:
                    on_epoch(row)
                print(_summary(label, epoch, cfg.epochs, row), flush=True)
    return state.history


def train_epoch(state: TrainState, data: DeviceData, cfg: TrainConfig, epoch: int,
                position: Position, stop: StopRequest,
                save: Callable[[dict[str, Any]], None] | None, accel: Accel, progress: bool,
                label: str) -> float:
    """The optimisation steps of one epoch from ``position``; returns the epoch's lr.

    Under torchrun every rank draws the same global batch and trains on its shard; the
    running sums and BatchNorm buffers are reduced at the end.
    """
    method, optimizer, scaler = state.method, state.optimizer, state.scaler
    rank, world = distributed.rank_world()
    lr = lr_at(cfg, epoch)
    steps, seen = epoch_steps(data.size("train"), cfg.batch_size, accel.static_shapes)
    for group in optimizer.param_groups:
        group["lr"] = lr
    method.train()
    bar = tqdm(range(position.step, steps), desc=f"{label} {epoch + 1}/{cfg.epochs}",
               leave=False, disable=None if progress else True)
    first_bad = torch.full((), -1, dtype=torch.long, device=data.device)
    for i in bar:
        index = position.order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
        x, y = data.batch("train", index)
        x = random_crop_flip(x, cfg.augment.crop_padding, cfg.augment.flip, state.generator)
        if world > 1:
            x, y, index = x[rank::world], y[rank::world], index[rank::world]
        method.index = index  # which training samples: per-sample state (PS-KD)
        with accel.autocast(data.device):
            out = method.step(x.contiguous(memory_format=accel.memory_format), y, epoch)
        loss = out.loss
        # the first non-finite step, kept on the device and read once per epoch (and at a
        # stop): testing it on the host every step would make the CPU wait for the GPU
        first_bad = torch.where(~torch.isfinite(loss.detach()) & (first_bad < 0), i, first_bad)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if world > 1:
            distributed.average_gradients(optimizer.param_groups[0]["params"], world)
        scaler.step(optimizer)
        scaler.update()
        position.add(out, loss, y, len(y) / seen)
        position.step = i + 1
        if _any_rank(stop.requested, world, data.device):
            _raise_if_diverged(first_bad, world, data.device, label, epoch)
            if save:
                save(state.snapshot(position))
            raise KeyboardInterrupt(f"stopped by signal after epoch {epoch + 1}, "
                                    f"step {i + 1}/{steps}")
    _raise_if_diverged(first_bad, world, data.device, label, epoch)
    if world > 1:
        position.sums = distributed.sum_over_ranks(position.sums, data.device)
        position.correct = distributed.sum_over_ranks({"c": position.correct}, data.device)["c"]
        distributed.sync_buffers(method.models)
    return lr


def _raise_if_diverged(first_bad: Tensor, world: int, device: torch.device, label: str,
                       epoch: int) -> None:
    """Stop the run if a step of this epoch had a non-finite loss (every rank together).
    The epoch's weights are then not saved: the last good epoch's checkpoint stays."""
    step = int(first_bad)
    if _any_rank(step >= 0, world, device):
        where = f"step {step + 1}" if step >= 0 else "a step of another rank"
        raise TrainingDiverged(f"{label}: non-finite loss at epoch {epoch + 1}, {where}; lower "
                               "train.lr or check the method's params")


def _any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """A stop or divergence decision every rank takes together (no rank left waiting)."""
    return distributed.any_rank(flag, device) if world > 1 else bool(flag)


def _summary(label: str, epoch: int, epochs: int, row: dict[str, float]) -> str:
    parts = [f"[ilkd] {label} epoch {epoch + 1}/{epochs}", f"lr {row['lr']:.4g}",
             f"loss {row['train_loss']:.4f}", f"train_acc {row['train_acc']:.2f}"]
    parts += [f"{k} {row[k]:.4f}" if "acc" not in k else f"{k} {row[k]:.2f}"
              for k in ("val_acc", "test_acc", "test_nll") if k in row]
    parts.append(f"({row['epoch_time_s']:.1f}s)")
    return "  ".join(parts)
