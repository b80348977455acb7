"""How close a training step comes to this machine's limit: achieved FLOP/s against the
measured matmul peak at the same dtype and thread count.

    .venv/bin/python benchmarks/flops.py [--presets quick cifar10-decide] [--threads 2]
        [--amp off|bf16] [--rounds 20] [--compile]

For each preset: the teacher's step (CE), the student's step (CE) and a KD step (the
teacher's no-grad forward plus the student's step), each a full training step through the
method code (forward, loss, backward, SGD update; ``pipeline/tools/estimate.py``'s
``training_step``) on a batch of the preset's size and image shape, in the preset's memory
format. A step's FLOPs are counted once with ``torch.utils.flop_counter`` (matmuls and
convolutions, forward and backward: what the cores' multiply-adds do); its time is the
median over interleaved rounds (``benchmarks/interleave.py``), so a busy machine slows
every variant alike. The peak is a 2048² matmul at the same dtype and thread count, timed
the same way. ``--compile`` adds each step with its models compiled (``runtime.compile``:
``torch.compile`` of every model's trunk, the teacher's included) beside the eager one, in
the same interleaved rounds, and the eager / compiled time ratio. Run it alone; state the
machine with its numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import interleaved  # noqa: E402

from pipeline.core.models import build_model  # noqa: E402
from pipeline.core.presets import load_preset  # noqa: E402
from pipeline.methods import build_method  # noqa: E402
from pipeline.tools.estimate import dataset_shape, training_step  # noqa: E402
from pipeline.tools.report import cpu  # noqa: E402
from pipeline.train.device import Accel, prepare_models  # noqa: E402

SIDE = 2048


def matmul_unit(dtype: torch.dtype):
    a, b = torch.randn(SIDE, SIDE, dtype=dtype), torch.randn(SIDE, SIDE, dtype=dtype)
    return lambda: torch.mm(a, b)


def step_units(preset: str, accel: Accel, compiled: bool = False
               ) -> dict[str, tuple[object, float]]:
    """``{name: (step callable, FLOPs of one step)}`` for the preset's three steps (with
    ``compiled``, also each step compiled, named ``<name> compiled``)."""
    params = load_preset(preset)
    _, classes, shape = dataset_shape(params)

    def model(role):
        cfg = getattr(params, role).model
        return build_model(cfg.arch, classes, shape[0], cfg.width)

    units = {}
    for name, role, method in (("teacher", "teacher", "ce"), ("student", "student", "ce"),
                               ("kd", "student", "kd")):
        batch = getattr(params, role).train.batch_size
        torch.manual_seed(0)
        m = build_method(method, params, lambda r=role: model(r), model("teacher"))
        m.to(memory_format=accel.memory_format)
        x, y = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))
        step = training_step(m, x, y, accel)
        step()  # first call outside the count: lazy initialisation
        with FlopCounterMode(display=False) as counter:
            step()
        flops = float(counter.get_total_flops())
        units[f"{preset} {name}"] = (step, flops)
        if compiled:  # the same step, models compiled as the engine compiles them
            torch.manual_seed(0)
            c = build_method(method, params, lambda r=role: model(r), model("teacher"))
            prepare_models(c, torch.device("cpu"), replace(accel, compile=True))
            fast = training_step(c, x, y, accel)
            for _ in range(3):  # compiles (forward, backward) and warms up outside the rounds
                fast()
            units[f"{preset} {name} compiled"] = (fast, flops)
    return units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=["quick", "cifar10-decide"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--amp", choices=["off", "bf16"], default="off")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--compile", action="store_true",
                        help="also time each step compiled (runtime.compile)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.amp == "bf16" else torch.float32
    accel = Accel(amp=torch.bfloat16 if args.amp == "bf16" else None, channels_last=True)
    units = {"matmul": (matmul_unit(dtype), 2.0 * SIDE**3)}
    for preset in args.presets:
        units.update(step_units(preset, accel, args.compile))
    times = interleaved({k: v[0] for k, v in units.items()}, rounds=args.rounds)
    peak = units["matmul"][1] / statistics.median(times["matmul"])
    machine = cpu()
    print(f"{machine['cpu']}, torch {machine['cpu_capability']} kernels, {args.threads} threads,"
          f" {args.amp}, channels_last; matmul {SIDE}² peak {peak / 1e9:.0f} GFLOP/s\n")
    print("| step | GFLOP per step | median ms | GFLOP/s | share of the matmul peak |"
          + (" eager / compiled (median, IQR) |" if args.compile else ""))
    print("|---|---|---|---|---|" + ("---|" if args.compile else ""))
    for name, (_, flops) in units.items():
        if name == "matmul":
            continue
        seconds = statistics.median(times[name])
        ratio = ""
        if args.compile:
            base = name.removesuffix(" compiled")
            ratio = f" {ratio_text(times[base], times[name])} |" if base != name else " |"
        print(f"| {name} | {flops / 1e9:.2f} | {1000 * seconds:.1f} | "
              f"{flops / seconds / 1e9:.0f} | {flops / seconds / peak:.0%} |{ratio}")


def ratio_text(eager: list[float], compiled: list[float]) -> str:
    """Median and interquartile range of the per-round ratio eager / compiled."""
    q = statistics.quantiles([e / c for e, c in zip(eager, compiled, strict=True)], n=4)
    return f"{q[1]:.2f} ({q[0]:.2f}-{q[2]:.2f})"


if __name__ == "__main__":
    main()
