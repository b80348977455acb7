"""Two epochs of every method at a preset's runtime, on CIFAR-shaped random data.

    .venv/bin/python benchmarks/smoke.py [--preset paper-cifar10] [--images 2048]
        [--batch 128] [--arch resnet20] [--methods ce,kd,...]

The device check's per-method smoke (issue #26): for each method (every registry
method at its full variant, and IL with each explainer) it trains epoch 1, then times
epoch 2 and prints step time, images/s, peak device memory and the host syncs per step
that ``torch.cuda.set_sync_debug_mode`` reports (CUDA only; tests/unit/test_syncs.py
counts the CPU-visible ones). Then it checks stop-and-resume: a run stopped after epoch 1
and resumed from its snapshot in a fresh method (other initial weights) must end with
the uninterrupted run's weights (bit for bit on the CPU; on CUDA within ``--rtol``, as
cuDNN may pick non-deterministic kernels). Exit status 1 when any method fails.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import warnings
from pathlib import Path

import torch

from pipeline.core.config import Params
from pipeline.core.models import build_model
from pipeline.core.sections import TrainConfig
from pipeline.methods import REGISTRY, Teacher, build_method
from pipeline.tools.presets import load_preset
from pipeline.train import engine

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import fake_data, sync  # noqa: E402

EXPLAINERS = ("gradcam", "input_gradient", "gradient_x_input")


def cases(params: Params) -> dict[str, tuple[str, Params]]:
    """name -> (method, params): every registry method, IL once per explainer."""
    out = {m: (m, params) for m in REGISTRY if m != "introspective"}
    for explainer in EXPLAINERS:
        il = params.introspective.model_copy(update={"explainer": explainer})
        out[f"il-{explainer}"] = ("introspective", params.model_copy(update={"introspective": il}))
    return out


def build(method: str, params: Params, classes: int, arch: str, seed: int):
    """The method with students initialised from ``seed``; a teacher (untrained: a smoke,
    not a result) is the same for every seed, as a teacher file would be."""
    width = params.student.model.width
    teacher = None
    if REGISTRY[method].teacher is Teacher.REQUIRED:
        torch.manual_seed(1234)
        teacher = build_model(arch, classes, 3, width)
    torch.manual_seed(seed)
    return build_method(method, params, lambda: build_model(arch, classes, 3, width), teacher)


def weights(method) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten().cpu() for p in method.models.parameters()])


def checkpointed(state: dict) -> dict:
    """The snapshot as a checkpoint file holds it (a snapshot shares the live tensors)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, map_location="cpu", weights_only=False)


def smoke(name: str, method_name: str, params: Params, data: engine.DeviceData,
          cfg: TrainConfig, accel: engine.Accel, arch: str, rtol: float) -> tuple[str, bool]:
    device, stop = data.device, engine.StopRequest()
    steps = -(-data.size("train") // cfg.batch_size)

    def fresh(seed: int) -> engine.TrainState:
        m = build(method_name, params, data.num_classes, arch, seed)
        engine.prepare_models(m, device, accel)
        m.bind(data.size("train"), data.num_classes, cfg.epochs, device)
        return engine.TrainState.create(m, cfg, 0, device, accel, None)

    def epoch(state: engine.TrainState, index: int) -> None:
        position = engine.Position.new_epoch(data.size("train"), state.generator, device)
        engine.train_epoch(state, data, cfg, index, position, stop, None, accel, False, name)
        state.epoch = index + 1

    engine.seed_everything(0)
    full = fresh(0)
    epoch(full, 0)  # warm-up: cuDNN autotuning, lazy allocations
    snapshot = checkpointed(full.snapshot())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    syncs = "n/a (CPU)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("warn")
        sync(device)
        tic = time.perf_counter()
        try:
            epoch(full, 1)
            sync(device)
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
        seconds = time.perf_counter() - tic
    if device.type == "cuda":
        n = sum("synchroniz" in str(w.message) for w in caught)
        syncs = f"{n / steps:.2f}"
    peak = f"{torch.cuda.max_memory_allocated() / 2**20:.0f}" if device.type == "cuda" else "n/a"

    resumed = fresh(99)  # other initial weights: everything must come from the snapshot
    engine.seed_everything(123)
    resumed.restore(snapshot, device)
    epoch(resumed, 1)
    a, b = weights(full.method), weights(resumed.method)
    diff = float(((a - b).abs() / (a.abs() + 1e-6)).max())
    ok = torch.equal(a, b) if device.type == "cpu" else diff <= rtol
    row = (f"| {name} | {1000 * seconds / steps:.1f} | {data.size('train') / seconds:.0f} | "
           f"{peak} | {syncs} | {'equal' if torch.equal(a, b) else f'max rel diff {diff:.1e}'}"
           f"{'' if ok else ' FAIL'} |")
    return row, ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper-cifar10")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=None, help="default: the preset's")
    parser.add_argument("--arch", default=None, help="default: the preset's student")
    parser.add_argument("--methods", default=None, help="comma-separated case names")
    parser.add_argument("--rtol", type=float, default=1e-3,
                        help="CUDA resume tolerance (largest relative weight difference)")
    args = parser.parse_args()
    params = load_preset(args.preset)
    device = engine.configure_runtime(params.runtime)
    accel = engine.accel_for(params.runtime, device)
    arch = args.arch or params.student.model.arch
    batch = args.batch or params.student.train.batch_size
    cfg = params.student.train.model_copy(update={"epochs": 2, "batch_size": batch})
    classes = 100 if "100" in args.preset else 10
    data = fake_data(args.images, classes, device)
    chosen = cases(params)
    if args.methods:
        unknown = set(args.methods.split(",")) - set(chosen)
        if unknown:
            parser.error(f"unknown --methods {sorted(unknown)} (known: {', '.join(chosen)})")
        chosen = {k: chosen[k] for k in args.methods.split(",")}
    where = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"{where}, torch {torch.__version__}, preset {args.preset}: {arch}, batch {batch}, "
          f"{args.images} images, {classes} classes, amp {accel.amp}, channels_last "
          f"{accel.channels_last}, compile {accel.compile}", flush=True)
    print("| method | ms/step | images/s | peak MiB | host syncs/step | stop-resume |")
    print("|---|---|---|---|---|---|", flush=True)
    failed = []
    for name, (method, p) in chosen.items():
        try:
            row, ok = smoke(name, method, p, data, cfg, accel, arch, args.rtol)
        except Exception as exc:  # one method's crash must not hide the others' rows
            row, ok = f"| {name} | FAIL: {type(exc).__name__}: {exc} | | | | |", False
        print(row, flush=True)
        if not ok:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
