"""Step time of introspective learning relative to plain CE, per explainer and class count.

    .venv/bin/python benchmarks/il_overhead.py [--arch resnet8] [--batch 64] [--size 32]

Same model, same batch, same machine, one process: each row is the median time of
a full training step (forward, loss, backward, SGD update) divided by CE's.
Targets from the issue: gradcam <= 1.10x; input_gradient at C=10 <= 1 + C/3.
"""

from __future__ import annotations

import argparse

import torch

from pipeline.core.config import IntrospectiveConfig
from pipeline.core.models import build_model
from pipeline.methods.ce import CE
from pipeline.methods.introspective import Introspective
from pipeline.tools.estimate import median_step_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet8")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, torch threads {torch.get_num_threads()}, {args.arch}, "
          f"batch {args.batch}, {args.size}x{args.size}x3, median of {args.steps} steps")
    print("| C | explainer | step ms | IL / CE | target |")
    print("|---|---|---|---|---|")
    for num_classes in (10, 100):
        torch.manual_seed(0)
        x = torch.randn(args.batch, 3, args.size, args.size, device=device)
        y = torch.randint(0, num_classes, (args.batch,), device=device)

        def model(num_classes: int = num_classes):
            torch.manual_seed(0)
            return build_model(args.arch, num_classes, 3).to(device)

        ce = median_step_seconds(CE(model()), x, y, args.steps)
        print(f"| {num_classes} | (CE) | {1000 * ce:.1f} | 1.00 | |")
        for explainer in ("gradcam", "input_gradient", "gradient_x_input"):
            method = Introspective(model(), IntrospectiveConfig(explainer=explainer, alpha=0.5))
            t = median_step_seconds(method, x, y, args.steps)
            target = {"gradcam": "<= 1.10"}.get(explainer, "")
            if explainer == "input_gradient" and num_classes == 10:
                target = f"<= {1 + num_classes / 3:.2f}"
            print(f"| {num_classes} | {explainer} | {1000 * t:.1f} | {t / ce:.2f} | {target} |")


if __name__ == "__main__":
    main()
