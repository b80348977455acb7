"""DVC training stages: ``teacher``, ``baselines``, ``kd_ablation``, ``introspective``, ``tuned``.

    python -m stages.train teacher
    python -m stages.train baselines --method label_smoothing --seed 0
    python -m stages.train kd_ablation --variant shuffled_non_gt --seed 1
    python -m stages.train tuned --method kd --seed 0       # with params_tuned.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.cli import main
from pipeline.core.config import Params, load_params
from pipeline.core.errors import ConfigError
from pipeline.core.runs import STAGE_METHOD, VARIANT_STAGES, RunSpec
from pipeline.methods import REGISTRY
from pipeline.train.runner import run
from pipeline.train.teachers import PER_SEED_RESULTS, summarise, teacher_specs
from pipeline.train.tune import tuned_params

STAGES = ("teacher", "baselines", "kd_ablation", "introspective", "tuned")


def allowed_methods(stage: str, params: Params) -> list[str]:
    if stage == "baselines":
        return params.baselines.methods
    if stage == "tuned":
        return params.tune.all_methods
    return [STAGE_METHOD[stage]]


def train_teachers(params: Params) -> dict:
    """The fixed split's one teacher, or one per seed (``data.split_seed: per_seed``; their
    summary in ``results/teacher``): :mod:`pipeline.train.teachers`."""
    by_seed = {spec.seed: run(spec, params) for spec in teacher_specs(params)}
    PER_SEED_RESULTS.mkdir(parents=True, exist_ok=True)  # a DVC output, empty when fixed
    if params.data.per_seed:
        return summarise(params, Path(), by_seed)
    return next(iter(by_seed.values()))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--method", help="baselines / tuned: which method")
    parser.add_argument("--variant", default="full", help="kd_ablation / introspective variant")
    parser.add_argument("--seed", type=int, help="seed (teacher: teacher.seed, or every "
                        "seed's own with data.split_seed: per_seed)")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def entry(argv: list[str] | None = None) -> None:
    args = parse(argv)
    params = load_params(args.params)
    method = STAGE_METHOD.get(args.stage, args.method)
    known = allowed_methods(args.stage, params)
    if method not in known:
        raise ConfigError(f"{args.stage}: unknown method '{method}' (known: {', '.join(known)})")
    variants = REGISTRY[method].variants if args.stage in VARIANT_STAGES else ("full",)
    if args.variant not in variants:
        raise ConfigError(f"{args.stage}: unknown variant '{args.variant}' "
                          f"(known: {', '.join(variants)})")
    if args.stage == "tuned":
        params = tuned_params(params, method)
    if args.stage == "teacher":
        metrics = train_teachers(params)
    elif args.seed is None:
        raise ConfigError(f"{args.stage}: --seed is required")
    else:
        metrics = run(RunSpec(args.stage, method, args.variant, args.seed), params)
    shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in ("test_acc", "test_nll", "test_ece")
                      if k in metrics)
    print(f"[ilkd] done: {shown}")


if __name__ == "__main__":
    main(entry)
