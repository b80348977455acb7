"""Where and how a run's math happens: the device, the fast path (``Accel``), the seeds,
and the prepared dataset on the device.

The prepared dataset sits on the training device as uint8; batches are normalised there
(no DataLoader workers for 32x32 data). The fast path (``runtime.amp``, ``channels_last``,
``compile``) is one ``Accel`` value: autocast wraps the whole step, so a teacher's no-grad
forward and an explainer's backward run in the same precision as the student.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.core.prepared import Prepared
from pipeline.core.sections import RuntimeConfig
from pipeline.methods.base import Method


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


PLAIN = Accel()  # fp32, contiguous, eager: the default


def accel_for(runtime: RuntimeConfig, device: torch.device) -> Accel:
    """Resolve ``runtime.amp: auto`` (bf16 on a CUDA device that supports it, else fp32)."""
    dtypes = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    amp = dtypes.get(runtime.amp)
    if runtime.amp == "auto":
        amp = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    return Accel(amp, runtime.channels_last, runtime.compile, runtime.compile_mode,
                 runtime.static_shapes)


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
