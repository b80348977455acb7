"""Training throughput of every method through the engine, against a bare PyTorch loop.

    .venv/bin/python benchmarks/throughput.py [--arch resnet20] [--batch 128] [--classes 10]
        [--amp off|auto|bf16|fp16] [--channels-last] [--compile]
        [--compile-mode default|reduce-overhead|max-autotune] [--rounds 30]

Same model, same data (random 32x32 uint8 images resident on the device), same batch size
and the same tensor augmentation, one process. The bare loop is the minimum any trainer
must do per step: normalise, augment, forward, CE, backward, SGD; it gets the same
fast-path settings (autocast, memory format, compilation) as the engine. An engine step is
``engine.train_epoch`` over a dataset of exactly one batch. Variants run interleaved step
by step (benchmarks/interleave.py). Rows: images/second from the median step time, and the
median per-round ratio of the step time to the bare loop's with its interquartile range
(1.00 = no engine overhead; goal for CE: <= 1.05).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.models import build_model
from pipeline.core.prepared import Prepared
from pipeline.core.sections import RuntimeConfig, TrainConfig
from pipeline.methods.ce import CE
from pipeline.methods.cs_kd import CSKD
from pipeline.methods.dml import DML
from pipeline.methods.introspective import Introspective
from pipeline.methods.kd import KD
from pipeline.methods.online_label_smoothing import OnlineLabelSmoothing
from pipeline.methods.ps_kd import PSKD
from pipeline.methods.registry.introspective import IntrospectiveConfig
from pipeline.train import engine
from pipeline.train.augment import random_crop_flip

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleaved, ratio_rows  # noqa: E402


def fake_data(n: int, classes: int, device: torch.device) -> engine.DeviceData:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
              "y_train": rng.integers(0, classes, n).astype(np.int64)}
    for split in ("val", "test"):  # evaluation is not what we time
        arrays[f"x_{split}"], arrays[f"y_{split}"] = arrays["x_train"][:0], arrays["y_train"][:0]
    meta = {"classes": [str(c) for c in range(classes)], "mean": [0.5] * 3, "std": [0.25] * 3,
            "shape": [3, 32, 32]}
    return engine.DeviceData(Prepared(arrays, meta), device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_unit(model, data: engine.DeviceData, cfg: TrainConfig, accel: engine.Accel):
    """One step of the minimal loop: normalise, augment, forward, CE, backward, SGD."""
    if accel.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if accel.compile:
        model.compile()
    scaler = torch.amp.GradScaler(data.device.type, enabled=accel.amp == torch.float16)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(0)
    model.train()

    def unit() -> None:
        order = torch.randperm(data.size("train"), generator=generator).to(data.device)
        x, y = data.batch("train", order)
        x = random_crop_flip(x, cfg.augment.crop_padding, cfg.augment.flip, generator)
        x = x.contiguous(memory_format=accel.memory_format)
        with accel.autocast(data.device):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return unit


def engine_unit(method, data: engine.DeviceData, cfg: TrainConfig, accel: engine.Accel):
    """One step through the engine: ``train_epoch`` over a dataset of exactly one batch."""
    engine.prepare_models(method, data.device, accel)
    method.bind(data.size("train"), data.num_classes, 10**6, data.device)
    state = engine.TrainState.create(method, cfg, 0, data.device, accel, None)
    stop = engine.StopRequest()

    def unit() -> None:
        position = engine.Position.new_epoch(data.size("train"), state.generator, data.device)
        engine.train_epoch(state, data, cfg, 0, position, stop, None, accel, False, "bench")
    return unit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--methods", default="ce,kd,dml,ps_kd,cs_kd,online_label_smoothing,"
                        "il-gradcam,il-input_gradient,il-gradient_x_input")
    parser.add_argument("--amp", default="off", choices=["off", "auto", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-mode", default="default",
                        choices=["default", "reduce-overhead", "max-autotune"],
                        help="reduce-overhead: CUDA graphs (one batch, so static shapes)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    accel = engine.accel_for(RuntimeConfig(
        amp=args.amp, channels_last=args.channels_last, compile=args.compile,
        compile_mode=args.compile_mode, static_shapes=args.compile_mode != "default"), device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    cfg = TrainConfig(epochs=1, batch_size=args.batch, lr=0.05,
                      schedule={"name": "constant"}, augment={"crop_padding": 4, "flip": True})
    data = fake_data(args.batch, args.classes, device)  # one batch: one engine epoch = one step

    def model():
        torch.manual_seed(0)
        return build_model(args.arch, args.classes, 3).to(device)

    print(f"{name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{args.arch}, batch {args.batch}, {args.classes} classes, amp {accel.amp}, "
          f"channels_last {accel.channels_last}, compile {accel.compile}, "
          f"{args.rounds} interleaved rounds")
    builders = {
        "ce": lambda: CE(model()),
        "kd": lambda: KD(model(), build_model("resnet56" if args.arch != "small_cnn" else args.arch,
                                              args.classes, 3).to(device), 0.9, 4.0),
        "dml": lambda: DML(model(), model(), 0.5),
        "ps_kd": lambda: PSKD(model(), 0.8),
        "cs_kd": lambda: CSKD(model(), 0.5, 4.0),
        "online_label_smoothing": lambda: OnlineLabelSmoothing(model(), 0.5),
    }
    for explainer in ("gradcam", "input_gradient", "gradient_x_input"):
        builders[f"il-{explainer}"] = (
            lambda e=explainer: Introspective(model(), IntrospectiveConfig(explainer=e)))
    units = {"bare CE loop": bare_unit(model(), data, cfg, accel)}
    for key in args.methods.split(","):
        units[key] = engine_unit(builders[key](), data, cfg, accel)
    times = interleaved(units, rounds=args.rounds, warmup=3,
                        sync=lambda: sync(device))
    print("| method | images/s | step time / bare CE loop (median) | IQR |")
    print("|---|---|---|---|")
    for key, ms, ratio, q1, q3 in ratio_rows(times, "bare CE loop"):
        print(f"| {key} | {args.batch / ms * 1000:.0f} | {ratio:.2f} | {q1:.2f}-{q3:.2f} |")


if __name__ == "__main__":
    main()
