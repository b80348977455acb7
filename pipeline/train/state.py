"""A run's training state and its checkpoint: everything a stopped run needs to continue
bit for bit on the CPU (models, optimizer, loss scaler, RNG states, history, the position
inside an interrupted epoch, and whatever the caller stores), in a versioned file written
atomically after every epoch and at a stop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pipeline.core.errors import CheckpointError
from pipeline.core.io import atomic_torch_save
from pipeline.core.sections import TrainConfig
from pipeline.methods.base import Method, StepOutput
from pipeline.train.device import Accel
from pipeline.train.sgd import SGD

CHECKPOINT_VERSION = 1


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


def _floats(sums: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sums.items()}
