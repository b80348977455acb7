"""Step time of introspective learning relative to plain CE, per explainer and class count.

    .venv/bin/python benchmarks/il_overhead.py [--arch resnet8] [--batch 64] [--rounds 30]

Same model, same batch, one process; a full training step (forward, loss, backward, SGD
update) of CE and of IL with each explainer, interleaved step by step (benchmarks/
interleave.py), so a busy machine slows every variant alike. Rows: median step time and
the median of the per-round ratio IL / CE with its interquartile range.
Targets: gradcam <= 1.10x; input_gradient at C=10 <= 1 + C/3.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from interleave import interleaved, markdown, ratio_rows  # noqa: E402

from pipeline.core.models import build_model  # noqa: E402
from pipeline.methods.ce import CE  # noqa: E402
from pipeline.methods.introspective import Introspective  # noqa: E402
from pipeline.methods.registry.introspective import IntrospectiveConfig  # noqa: E402
from pipeline.tools.estimate import training_step  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet8")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--classes", default="10,100")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.arch}, "
          f"batch {args.batch}, {args.size}x{args.size}x3, {args.rounds} interleaved rounds")
    for num_classes in map(int, args.classes.split(",")):
        torch.manual_seed(0)
        x = torch.randn(args.batch, 3, args.size, args.size, device=device)
        y = torch.randint(0, num_classes, (args.batch,), device=device)

        def model(num_classes: int = num_classes):
            torch.manual_seed(0)
            return build_model(args.arch, num_classes, 3).to(device)

        units = {"CE": training_step(CE(model()), x, y)}
        for explainer in ("gradcam", "input_gradient", "gradient_x_input"):
            method = Introspective(model(), IntrospectiveConfig(explainer=explainer, alpha=0.5))
            units[f"IL {explainer}"] = training_step(method, x, y)
        times = interleaved(units, rounds=args.rounds, sync=sync)
        print(f"\nC = {num_classes}")
        print(markdown(ratio_rows(times, "CE"), "IL / CE"), flush=True)


if __name__ == "__main__":
    main()
