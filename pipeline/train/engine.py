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
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from pipeline.core.config import RuntimeConfig, TrainConfig
from pipeline.core.errors import CheckpointError, ConfigError, TrainingDiverged
from pipeline.core.io import atomic_torch_save
from pipeline.core.metrics import classification_metrics
from pipeline.core.prepared import Prepared
from pipeline.methods.base import Method, StepOutput, eval_mode
from pipeline.train import distributed
from pipeline.train.augment import random_crop_flip
from pipeline.train.sgd import SGD

CHECKPOINT_VERSION = 1


def select_device(runtime: RuntimeConfig) -> torch.device:
    if runtime.device == "cuda" or (runtime.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from pipeline.core.errors import ConfigError

            raise ConfigError("runtime.device: 'cuda' requested but no CUDA device is available")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def configure_runtime(runtime: RuntimeConfig) -> torch.device:
    if runtime.num_threads:
        torch.set_num_threads(runtime.num_threads)
    device = select_device(runtime)
    if device.type == "cuda":
        if runtime.deterministic:  # cuBLAS is deterministic only with a fixed workspace,
            # read when its first handle is made (before any matmul of this process)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
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
    compile_mode: str = "default"
    static_shapes: bool = False  # drop each epoch's last partial batch

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
    return Accel(amp, runtime.channels_last, runtime.compile, runtime.compile_mode,
                 runtime.static_shapes)


def epoch_steps(n: int, batch_size: int, static_shapes: bool) -> tuple[int, int]:
    """Steps per epoch and the samples they train on: every sample, or under static shapes
    only full batches (the dropped remainder differs each epoch: the order is reshuffled)."""
    if static_shapes and n >= batch_size:
        return n // batch_size, n // batch_size * batch_size
    return math.ceil(n / batch_size), n


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
                mode = {} if accel.compile_mode == "default" else {"mode": accel.compile_mode}
                getattr(model, "trunk", model).compile(**mode)


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
    """Logits in fp32 whatever ``runtime.amp`` trains in: the reported accuracy, NLL, ECE
    and reliability are the model's, not its reduced-precision arithmetic's."""
    logits = []
    with eval_mode(model):
        for i in range(0, data.size(split), batch_size):
            x = data.batch(split, slice(i, i + batch_size))[0]
            logits.append(model(x.contiguous(memory_format=accel.memory_format)).float())
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
        """The saved state, or None when absent or written for other params or code."""
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
            print(f"[ilkd] {self.path}: written for other params or code, "
                  "starting from scratch")
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        atomic_torch_save(self.path, {**state, "version": CHECKPOINT_VERSION,
                                      "fingerprint": self.fingerprint})


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG a run draws from. On CUDA only the current device's: a run resumed where
    fewer GPUs are visible (a packed worker sees one) must still restore it."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state(), "generator": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if isinstance(cuda, list | tuple):  # older checkpoints: every visible device's
            cuda = cuda[torch.cuda.current_device()] if cuda else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)


EpochCallback = Callable[[dict[str, float]], None]


@dataclass
class Position:
    """Where a run is inside an epoch: its sample order, the next step, the running sums.

    Saved at a mid-epoch stop, so a resumed run continues on the same batches.
    """

    order: Tensor
    step: int = 0
    sums: dict[str, Any] = field(default_factory=dict)  # on the device: no sync per step
    correct: Any = 0.0

    @classmethod
    def new_epoch(cls, n: int, generator: torch.Generator, device: torch.device) -> Position:
        return cls(torch.randperm(n, generator=generator).to(device))

    def add(self, out: StepOutput, loss: Tensor, y: Tensor, weight: float) -> None:
        for name, value in {"loss": loss, **out.terms, **out.stats}.items():
            key = f"train_{name}"
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().double() * weight
        self.correct = self.correct + out.logits.detach().argmax(1).eq(y).sum()

    def saved(self) -> dict[str, Any]:
        return {"step": self.step, "order": self.order.cpu(), "sums": _floats(self.sums),
                "correct": float(self.correct)}

    @classmethod
    def from_saved(cls, saved: dict[str, Any], device: torch.device) -> Position:
        return cls(saved["order"].to(device), saved["step"], dict(saved["sums"]),
                   saved["correct"])


def make_sgd(params: list[Tensor], cfg: TrainConfig, device: torch.device) -> Any:
    """torch's SGD with its multi-tensor (foreach) update on CUDA, the well-kept fast path
    there; on the CPU the engine's own SGD, the same math without torch.optim's import of
    torch._dynamo (~2 s per stage process). Their state_dicts load into each other, so a
    checkpoint moves between devices (tests/unit/test_engine.py: bit for bit on the CPU)."""
    kwargs = dict(lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                  weight_decay=cfg.weight_decay)
    if device.type == "cuda":
        from torch.optim import SGD as TorchSGD

        return TorchSGD(params, foreach=True, **kwargs)
    return SGD(params, **kwargs)


@dataclass
class TrainState:
    """Everything a stopped run needs to continue bit for bit (checkpoint = ``snapshot()``)."""

    method: Method
    optimizer: Any  # SGD here, torch.optim.SGD on CUDA (make_sgd)
    scaler: torch.amp.GradScaler  # fp16 loss scaling; a no-op otherwise
    generator: torch.Generator  # batch order and augmentation
    extra: dict[str, Any]  # the caller's, e.g. the MLflow run id
    history: list[dict[str, float]] = field(default_factory=list)
    epoch: int = 0  # finished epochs

    @classmethod
    def create(cls, method: Method, cfg: TrainConfig, seed: int, device: torch.device,
               accel: Accel, extra: dict[str, Any] | None) -> TrainState:
        params = [p for p in method.models.parameters() if p.requires_grad]
        optimizer = make_sgd(params, cfg, device)
        scaler = torch.amp.GradScaler(device.type, enabled=accel.amp == torch.float16)
        return cls(method, optimizer, scaler, torch.Generator().manual_seed(seed), extra or {})

    def snapshot(self, position: Position | None = None) -> dict[str, Any]:
        return {"models": self.method.models.state_dict(), "method": self.method.extra_state(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "epoch": self.epoch, "history": list(self.history),
                "rng": _rng_state(self.generator), "extra": self.extra,
                "partial": position.saved() if position else None}

    def restore(self, saved: dict[str, Any], device: torch.device) -> Position | None:
        """Load a snapshot; the position inside an interrupted epoch, if it stopped in one."""
        self.method.models.load_state_dict(saved["models"])
        self.method.load_extra_state(saved.get("method") or {})
        self.optimizer.load_state_dict(saved["optimizer"])
        if saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        _set_rng_state(saved["rng"], self.generator)
        self.history, self.epoch = list(saved["history"]), int(saved["epoch"])
        partial = saved.get("partial")
        return Position.from_saved(partial, device) if partial else None


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


def _floats(sums: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sums.items()}


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
