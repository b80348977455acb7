"""Total training throughput with K processes sharing one device (``parallel --per-gpu K``).

    .venv/bin/python benchmarks/packing.py [--k 1,4,8] [--seconds 20] [--preset paper-cifar10]
        [--method ce] [--arch resnet20] [--batch 128]

Small models leave an H200 mostly idle in one process; packing K runs on it is how the
parallel runner fills it. For each K this starts K worker processes (each with
cores / K CPU threads, as the runner gives its workers), lets them warm up, starts them
together, and runs each for ``--seconds`` of engine steps (the preset's runtime, one
batch of random CIFAR-shaped images). Rows: total images/s over all K, per process, and
the total's gain over K = 1: what ``make estimate --gpus 1 --per-gpu K`` should assume.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(args: argparse.Namespace) -> None:
    """Warm up, say ``ready``, wait for ``go`` on stdin, then step for ``--seconds``."""
    import torch

    from pipeline.core.models import build_model
    from pipeline.methods import REGISTRY, Teacher, build_method
    from pipeline.tools.presets import load_preset
    from pipeline.train import engine

    sys.path.insert(0, str(HERE))
    from throughput import engine_unit, fake_data, sync

    params = load_preset(args.preset)
    device = engine.configure_runtime(params.runtime)
    torch.set_num_threads(args.threads)
    accel = engine.accel_for(params.runtime, device)
    arch = args.arch or params.student.model.arch
    batch = args.batch or params.student.train.batch_size
    cfg = params.student.train.model_copy(update={"epochs": 1, "batch_size": batch})
    data = fake_data(batch, 10, device)
    torch.manual_seed(0)

    def make():
        return build_model(arch, 10, 3, params.student.model.width)
    teacher = make() if REGISTRY[args.method].teacher is Teacher.REQUIRED else None
    unit = engine_unit(build_method(args.method, params, make, teacher), data, cfg, accel)
    for _ in range(3):
        unit()
    sync(device)
    print("ready", flush=True)
    sys.stdin.readline()
    steps, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < args.seconds:
        for _ in range(5):  # a few steps between clock reads: the queue stays full
            unit()
        steps += 5
        sync(device)
    print(f"{steps * batch} {time.perf_counter() - tic:.4f}", flush=True)


def pack(k: int, args: argparse.Namespace) -> tuple[float, float]:
    """Total and per-process images/s of ``k`` concurrent workers."""
    threads = max(1, (os.cpu_count() or 1) // k)
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads),
           "--seconds", str(args.seconds), "--preset", args.preset, "--method", args.method]
    cmd += ["--arch", args.arch] if args.arch else []
    cmd += ["--batch", str(args.batch)] if args.batch else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(k)]
    try:
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise SystemExit(f"a worker failed to start (exit {p.wait()})")
        for p in procs:  # start together
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            images, seconds = p.stdout.readline().split()
            results.append((int(images), float(seconds)))
    finally:
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    total = sum(i for i, _ in results) / max(s for _, s in results)
    return total, total / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", default="1,4,8", help="process counts to compare")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--preset", default="paper-cifar10")
    parser.add_argument("--method", default="ce")
    parser.add_argument("--arch", default=None, help="default: the preset's student")
    parser.add_argument("--batch", type=int, default=None, help="default: the preset's")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    ks = [int(k) for k in args.k.split(",")]
    print(f"preset {args.preset}, method {args.method}, {args.seconds:g} s per K, "
          f"{os.cpu_count()} CPU cores shared", flush=True)
    print("| K | total images/s | per process | total / K=1 |")
    print("|---|---|---|---|", flush=True)
    base = None
    for k in ks:
        total, each = pack(k, args)
        base = base or total
        print(f"| {k} | {total:.0f} | {each:.0f} | {total / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
