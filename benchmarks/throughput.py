"""Training throughput of every method through the engine, against a bare PyTorch loop.

    .venv/bin/python benchmarks/throughput.py [--arch resnet20] [--batch 128] [--classes 10]
        [--amp off|auto|bf16|fp16] [--channels-last] [--compile]

Same model, same data (random 32x32 uint8 images resident on the device), same
batch size and the same tensor augmentation, one process. The bare loop is the
minimum any trainer must do per step: normalise, augment, forward, CE,
backward, SGD; it gets the same fast-path settings (autocast, memory format,
compilation) as the engine. Rows: images/second over one epoch (after a warm-up epoch) and
the ratio engine / bare (1.00 = no engine overhead). Goal for CE: >= 0.95.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.config import IntrospectiveConfig, RuntimeConfig, TrainConfig
from pipeline.core.models import build_model
from pipeline.core.prepared import Prepared
from pipeline.methods.ce import CE
from pipeline.methods.dml import DML
from pipeline.methods.introspective import Introspective
from pipeline.methods.kd import KD
from pipeline.train import engine
from pipeline.train.augment import random_crop_flip


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


def bare_loop(model, data: engine.DeviceData, cfg: TrainConfig, epochs: int,
              accel: engine.Accel) -> float:
    if accel.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if accel.compile:
        model.compile()
    scaler = torch.amp.GradScaler(data.device.type, enabled=accel.amp == torch.float16)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(0)
    n = data.size("train")
    model.train()
    for epoch in range(epochs + 1):
        if epoch == 1:
            sync(data.device)
            tic = time.perf_counter()
        order = torch.randperm(n, generator=generator).to(data.device)
        for i in range(0, n, cfg.batch_size):
            x, y = data.batch("train", order[i:i + cfg.batch_size])
            x = random_crop_flip(x, cfg.augment.crop_padding, cfg.augment.flip, generator)
            x = x.contiguous(memory_format=accel.memory_format)
            with accel.autocast(data.device):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    sync(data.device)
    return epochs * n / (time.perf_counter() - tic)


def engine_rate(method, data: engine.DeviceData, cfg: TrainConfig, epochs: int,
                accel: engine.Accel) -> float:
    engine.fit(method, data, cfg.model_copy(update={"epochs": 1}), seed=0, progress=False,
               label="warm-up", accel=accel)
    sync(data.device)
    tic = time.perf_counter()
    engine.fit(method, data, cfg.model_copy(update={"epochs": epochs}), seed=0, progress=False,
               label="timed", accel=accel)
    sync(data.device)
    return epochs * data.size("train") / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--methods", default="ce,kd,dml,il-gradcam,il-input_gradient,"
                        "il-gradient_x_input")
    parser.add_argument("--amp", default="off", choices=["off", "auto", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    accel = engine.accel_for(RuntimeConfig(amp=args.amp, channels_last=args.channels_last,
                                           compile=args.compile), device)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    cfg = TrainConfig(epochs=1, batch_size=args.batch, lr=0.05,
                      schedule={"name": "constant"}, augment={"crop_padding": 4, "flip": True})
    data = fake_data(args.images, args.classes, device)

    def model():
        torch.manual_seed(0)
        return build_model(args.arch, args.classes, 3).to(device)

    print(f"{name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{args.arch}, batch {args.batch}, {args.classes} classes, {args.images} images, "
          f"amp {accel.amp}, channels_last {accel.channels_last}, compile {accel.compile}")
    bare = bare_loop(model(), data, cfg, args.epochs, accel)
    print("| method | images/s | engine / bare CE loop |")
    print("|---|---|---|")
    print(f"| bare CE loop | {bare:.0f} | 1.00 |")
    builders = {
        "ce": lambda: CE(model()),
        "kd": lambda: KD(model(), build_model("resnet56" if args.arch != "small_cnn" else args.arch,
                                              args.classes, 3).to(device), 0.9, 4.0),
        "dml": lambda: DML(model(), model(), 0.5),
    }
    for explainer in ("gradcam", "input_gradient", "gradient_x_input"):
        builders[f"il-{explainer}"] = (
            lambda e=explainer: Introspective(model(), IntrospectiveConfig(explainer=e)))
    for key in args.methods.split(","):
        rate = engine_rate(builders[key](), data, cfg, args.epochs, accel)
        print(f"| {key} | {rate:.0f} | {rate / bare:.2f} |", flush=True)


if __name__ == "__main__":
    main()
