"""DVC training stages: ``teacher``, ``baselines``, ``kd_ablation``, ``introspective``.

    python -m stages.train teacher
    python -m stages.train baselines --method kd --seed 0
    python -m stages.train kd_ablation --variant shuffled_non_gt --seed 1
    python -m stages.train tuned --method label_smoothing --seed 0   # params_tuned.yaml
"""

from __future__ import annotations

import argparse
from typing import get_args

from pipeline.cli import main
from pipeline.config import BaselineMethod, ILVariant, KDVariant, TunedMethod, load_params
from pipeline.errors import ConfigError
from pipeline.runner import RunSpec, run
from pipeline.tune import tuned_params

STAGE_METHOD = {"teacher": "ce", "kd_ablation": "kd", "introspective": "introspective"}
STAGE_METHODS = {"baselines": BaselineMethod, "tuned": TunedMethod}
STAGE_VARIANTS = {"kd_ablation": get_args(KDVariant), "introspective": get_args(ILVariant)}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["teacher", "baselines", "kd_ablation", "introspective",
                                          "tuned"])
    parser.add_argument("--method", help="baselines / tuned: which method")
    parser.add_argument("--variant", default="full", help="kd_ablation / introspective variant")
    parser.add_argument("--seed", type=int, help="seed (teacher: teacher.seed)")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def entry(argv: list[str] | None = None) -> None:
    args = parse(argv)
    params = load_params(args.params)
    if args.stage in STAGE_METHODS:
        known = get_args(STAGE_METHODS[args.stage])
        if args.method not in known:
            raise ConfigError(f"{args.stage}: unknown method '{args.method}' "
                              f"(known: {', '.join(known)})")
        method = args.method
        if args.stage == "tuned":
            params = tuned_params(params, method)
    else:
        method = STAGE_METHOD[args.stage]
    variants = STAGE_VARIANTS.get(args.stage, ("full",))
    if args.variant not in variants:
        raise ConfigError(f"{args.stage}: unknown variant '{args.variant}' "
                          f"(known: {', '.join(variants)})")
    seed = params.teacher.seed if args.stage == "teacher" else args.seed
    if seed is None:
        raise ConfigError(f"{args.stage}: --seed is required")
    metrics = run(RunSpec(args.stage, method, args.variant, seed), params)
    shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in ("test_acc", "test_nll", "test_ece")
                      if k in metrics)
    print(f"[ilkd] done: {shown}")


if __name__ == "__main__":
    main(entry)
