"""Multi-process training under ``torchrun`` (one run on several GPUs, or gloo on CPU).

We do not wrap models in ``DistributedDataParallel``: methods call several
entry points of their models (``forward_features`` for Grad-CAM, two peers in
DML), so the engine averages gradients itself after each backward pass, and
broadcasts BatchNorm buffers from rank 0 before evaluation. ``train.batch_size``
is the *global* batch: every rank draws and augments the same global batch
(same seed) and trains on its ``rank::world`` shard, so the learning rate needs
no scaling and the run is the single-process run up to per-shard BatchNorm
statistics. Only rank 0 logs to MLflow, checkpoints and writes outputs.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def setup() -> tuple[int, int]:
    """Join the process group torchrun describes; ``(rank, world)``, ``(0, 1)`` without one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def average_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on one (collective stop decisions)."""
    t = torch.tensor(float(flag), device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_ranks(values: dict, device: torch.device) -> dict:
    out = {}
    for key, value in values.items():
        t = torch.as_tensor(value, dtype=torch.float64, device=device).clone()
        dist.all_reduce(t)
        out[key] = t
    return out


def sync_buffers(module: torch.nn.Module) -> None:
    for buffer in module.buffers():
        dist.broadcast(buffer, 0)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
