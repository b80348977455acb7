"""The one training engine: every method (CE, KD, DML, IL, ...) trains through ``fit``.

Design choices, and why:
* The prepared dataset sits on the training device as uint8; batches are
  normalised and augmented there (no DataLoader workers for 32x32 data).
* The learning rate is a pure function of the epoch, so resuming needs no
  scheduler object, only the epoch counter.
* The fast path (``runtime.amp``, ``channels_last``, ``compile``) is one
  ``Accel`` value: autocast wraps the whole step, so a teacher's no-grad
  forward and an explainer's backward run in the same precision as the student.
* After every epoch a checkpoint (models, optimizer, RNG states, history, and
  whatever ``extra`` the caller needs, e.g. the MLflow run id) is written
  atomically; ``fit`` continues from it bit-for-bit on CPU.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import distributed
from .augment import random_crop_flip
from .config import RuntimeConfig, TrainConfig
from .data import Prepared
from .errors import CheckpointError, TrainingDiverged
from .io import atomic_torch_save
from .methods.base import Method
from .metrics import classification_metrics

CHECKPOINT_VERSION = 1


def select_device(runtime: RuntimeConfig) -> torch.device:
    if runtime.device == "cuda" or (runtime.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from .errors import ConfigError

            raise ConfigError("runtime.device: 'cuda' requested but no CUDA device is available")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def configure_runtime(runtime: RuntimeConfig) -> torch.device:
    if runtime.num_threads:
        torch.set_num_threads(runtime.num_threads)
    device = select_device(runtime)
    if device.type == "cuda":
        # CPU kernels are deterministic already; the switch also imports torch._inductor
        # (~1.3 s per stage process), so it is only flipped where it matters
        torch.use_deterministic_algorithms(runtime.deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not runtime.deterministic
        if not runtime.deterministic:
            torch.set_float32_matmul_precision("high")  # TF32 on Ampere and newer
    return device


@dataclass(frozen=True)
class Accel:
    """How the math runs: autocast dtype (None = fp32), memory format, compilation."""

    amp: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self, device: torch.device) -> torch.autocast:
        return torch.autocast(device.type, dtype=self.amp or torch.bfloat16,
                              enabled=self.amp is not None)


def accel_for(runtime: RuntimeConfig, device: torch.device) -> Accel:
    """Resolve ``runtime.amp: auto`` (bf16 on a CUDA device that supports it, else fp32)."""
    dtypes = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    amp = dtypes.get(runtime.amp)
    if runtime.amp == "auto":
        amp = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return Accel(amp, runtime.channels_last, runtime.compile)


def prepare_models(method: Method, device: torch.device, accel: Accel) -> None:
    """Move the method (teacher included) to ``device``; apply memory format and compile."""
    method.to(device)
    if accel.channels_last:
        method.to(memory_format=torch.channels_last)
    if accel.compile:
        for model in [*method.models.values(), getattr(method, "teacher", None)]:
            if isinstance(model, nn.Module):
                # the trunk serves forward and forward_features (IL's feature-map explainers);
                # compiled in place, so state_dict keys stay unprefixed
                getattr(model, "trunk", model).compile()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class DeviceData:
    """A prepared dataset on the training device; normalises batches on the fly."""

    def __init__(self, prepared: Prepared, device: torch.device) -> None:
        self.device = device
        self.meta = prepared.meta
        self.num_classes = prepared.num_classes
        self.x = {s: torch.from_numpy(prepared.x(s)).to(device) for s in ("train", "val", "test")}
        self.y = {s: torch.from_numpy(prepared.y(s)).to(device) for s in ("train", "val", "test")}
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(prepared.meta["mean"], device=device).view(shape)
        self.std = torch.tensor(prepared.meta["std"], device=device).view(shape)

    def size(self, split: str) -> int:
        return int(self.y[split].shape[0])

    def batch(self, split: str, index: Tensor | slice) -> tuple[Tensor, Tensor]:
        x = self.x[split][index].float().div_(255.0)
        return (x - self.mean) / self.std, self.y[split][index]


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate for 0-based ``epoch`` (milestones are fractions of ``epochs``)."""
    sched = cfg.schedule
    if sched.name == "constant":
        return cfg.lr
    if sched.name == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * epoch / cfg.epochs))
    passed = sum(epoch >= round(m * cfg.epochs) for m in sched.milestones)
    return cfg.lr * sched.gamma**passed


@torch.no_grad()
def predict(model: nn.Module, data: DeviceData, split: str, batch_size: int,
            accel: Accel = Accel()) -> Tensor:
    was_training = model.training
    model.eval()
    logits = []
    with accel.autocast(data.device):
        for i in range(0, data.size(split), batch_size):
            x = data.batch(split, slice(i, i + batch_size))[0]
            logits.append(model(x.contiguous(memory_format=accel.memory_format)).float())
    model.train(was_training)
    return torch.cat(logits)


def evaluate(method: Method, data: DeviceData, batch_size: int,
             accel: Accel = Accel()) -> dict[str, float]:
    """Metrics of every evaluated model on val (if any) and test.

    With several models (DML peers) each gets a ``<name>_`` prefix and the
    unprefixed keys are their mean.
    """
    models = method.evaluated()
    out: dict[str, float] = {}
    per_model: list[dict[str, float]] = []
    for name, model in models.items():
        metrics: dict[str, float] = {}
        for split in ("val", "test"):
            if data.size(split):
                logits = predict(model, data, split, batch_size, accel)
                metrics.update(classification_metrics(logits, data.y[split], f"{split}_"))
        per_model.append(metrics)
        if len(models) > 1:
            out.update({f"{name}_{k}": v for k, v in metrics.items()})
    for key in per_model[0]:
        out[key] = float(np.mean([m[key] for m in per_model]))
    return out


@dataclass
class Checkpoint:
    path: Path
    fingerprint: str

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when absent or written for other params."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise CheckpointError(
                f"{self.path}: checkpoint is unreadable ({type(exc).__name__}); "
                "delete it to restart this run from scratch"
            ) from None
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{self.path}: not an ilkd checkpoint; delete it to restart")
        if state.get("fingerprint") != self.fingerprint:
            print(f"[ilkd] {self.path}: written for other params, starting from scratch")
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        atomic_torch_save(self.path, {**state, "version": CHECKPOINT_VERSION,
                                      "fingerprint": self.fingerprint})


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    accel: Accel = Accel(),
) -> list[dict[str, float]]:
    """Train ``method`` for ``cfg.epochs``; return one metrics row per epoch.

    ``resume`` is a state from :meth:`Checkpoint.load`; ``extra`` is stored in
    every checkpoint as-is. ``on_epoch`` receives each finished epoch's row.
    """
    prepare_models(method, data.device, accel)
    params = [p for p in method.models.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    # fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not
    scaler = torch.amp.GradScaler(data.device.type, enabled=accel.amp == torch.float16)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    start = 0
    if resume is not None:
        method.models.load_state_dict(resume["models"])
        optimizer.load_state_dict(resume["optimizer"])
        if resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        _set_rng_state(resume["rng"], generator)
        history = list(resume["history"])
        start = int(resume["epoch"])
        if start < cfg.epochs:
            print(f"[ilkd] {label}: resuming after epoch {start}/{cfg.epochs}")

    rank, world = distributed.rank_world()
    n = data.size("train")
    steps = math.ceil(n / cfg.batch_size)
    partial = (resume or {}).get("partial")
    with StopRequest() as stop:
        for epoch in range(start, cfg.epochs):
            tic = time.perf_counter()
            lr = lr_at(cfg, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            method.train()
            if partial is not None:  # resume inside an interrupted epoch
                order = partial["order"].to(data.device)
                first, sums, correct = partial["step"], dict(partial["sums"]), partial["correct"]
                partial = None
            else:
                order = torch.randperm(n, generator=generator).to(data.device)
                first, sums, correct = 0, {}, 0.0
            bar = tqdm(range(first, steps), desc=f"{label} {epoch + 1}/{cfg.epochs}", leave=False,
                       disable=None if progress else True)
            for i in bar:
                x, y = data.batch("train", order[i * cfg.batch_size:(i + 1) * cfg.batch_size])
                x = random_crop_flip(x, cfg.augment.crop_padding, cfg.augment.flip, generator)
                if world > 1:  # every rank drew the same global batch; train on its shard
                    x, y = x[rank::world], y[rank::world]
                x = x.contiguous(memory_format=accel.memory_format)
                with accel.autocast(data.device):
                    out = method.step(x, y, epoch)
                loss = out.loss
                diverged = not torch.isfinite(loss.detach())
                if world > 1:
                    diverged = distributed.any_rank(diverged, data.device)
                if diverged:
                    terms = {k: float(v.detach()) for k, v in out.terms.items()}
                    raise TrainingDiverged(
                        f"{label}: non-finite loss at epoch {epoch + 1}, step {i + 1} ({terms}); "
                        "lower train.lr or check the method's params"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if world > 1:
                    distributed.average_gradients(params, world)
                scaler.step(optimizer)
                scaler.update()
                # running sums stay on the device (float64): no host sync per loss term
                weight = len(y) / n
                logged = {"loss": loss, **out.terms, **out.stats}
                for name, value in logged.items():
                    key = f"train_{name}"
                    sums[key] = sums.get(key, 0.0) + value.detach().double() * weight
                correct = correct + out.logits.detach().argmax(1).eq(y).sum()
                stopping = stop.requested
                if world > 1:
                    stopping = distributed.any_rank(stopping, data.device)
                if stopping:
                    if checkpoint is not None and rank == 0:
                        checkpoint.save(_state(method, optimizer, scaler, epoch, history,
                                               generator, extra, {"step": i + 1, "order": order.cpu(),
                                                       "sums": _floats(sums),
                                                       "correct": float(correct)}))
                    raise KeyboardInterrupt(f"stopped by signal after epoch {epoch + 1}, "
                                            f"step {i + 1}/{steps}")
            if world > 1:
                sums = distributed.sum_over_ranks(sums, data.device)
                correct = distributed.sum_over_ranks({"c": correct}, data.device)["c"]
                distributed.sync_buffers(method.models)
            row: dict[str, float] = {"epoch": epoch + 1, "lr": lr, **_floats(sums),
                                     "train_acc": 100.0 * float(correct) / n}
            row.update(method.epoch_metrics())
            row.update(evaluate(method, data, cfg.eval_batch_size, accel))
            row["epoch_time_s"] = time.perf_counter() - tic
            history.append(row)
            if rank == 0:
                if checkpoint is not None:
                    checkpoint.save(_state(method, optimizer, scaler, epoch + 1, history,
                                           generator, extra))
                if on_epoch is not None:
                    on_epoch(row)
                print(_summary(label, epoch, cfg.epochs, row), flush=True)
    return history


def _floats(sums: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sums.items()}


def _state(method: Method, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
           epoch: int, history: list[dict[str, float]], generator: torch.Generator,
           extra: dict[str, Any] | None, partial: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to continue bit-for-bit; ``partial`` marks a mid-epoch stop."""
    return {"models": method.models.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "epoch": epoch, "history": list(history), "rng": _rng_state(generator),
            "extra": extra or {}, "partial": partial}


class StopRequest:
    """SIGINT/SIGTERM set a flag instead of raising, so the current step finishes cleanly.

    A second signal falls back to the default behaviour (an immediate KeyboardInterrupt).
    Outside the main thread signals cannot be handled; the flag then stays unset.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"[ilkd] signal {signum}: finishing the current step, then checkpointing",
              flush=True)

    def __enter__(self) -> StopRequest:
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _summary(label: str, epoch: int, epochs: int, row: dict[str, float]) -> str:
    parts = [f"[ilkd] {label} epoch {epoch + 1}/{epochs}", f"lr {row['lr']:.4g}",
             f"loss {row['train_loss']:.4f}", f"train_acc {row['train_acc']:.2f}"]
    parts += [f"{k} {row[k]:.4f}" if "acc" not in k else f"{k} {row[k]:.2f}"
              for k in ("val_acc", "test_acc", "test_nll") if k in row]
    parts.append(f"({row['epoch_time_s']:.1f}s)")
    return "  ".join(parts)
