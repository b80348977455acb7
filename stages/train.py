"""DVC training stages: the teachers, ``baselines``, ``kd_ablation``, ``introspective``, ``tuned``.

    python -m stages.train shared_teacher          # a fixed split's one teacher
    python -m stages.train teacher --seed 0        # the teacher seed 0's students distil
    python -m stages.train tuning_teacher --seed 100
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
from pipeline.train import offmode, teachers
from pipeline.train.runner import run
from pipeline.train.tune import tuned_params

TEACHER_STAGES = ("shared_teacher", "teacher", "tuning_teacher")
STAGES = (*TEACHER_STAGES, "baselines", "kd_ablation", "introspective", "tuned")


def allowed_methods(stage: str, params: Params) -> list[str]:
    if stage == "baselines":
        return params.baselines.methods
    if stage == "tuned":
        return params.tune.all_methods
    return [STAGE_METHOD[stage]]


def train_teacher(stage: str, params: Params, seed: int | None, root: Path = Path()) -> dict:
    """One teacher instance (:mod:`pipeline.train.teachers`): trained, copied from the fixed
    split's shared teacher, or a note saying why this mode trains none."""
    if stage == "shared_teacher":
        spec = teachers.shared_spec(params)
        if params.data.per_seed:
            return offmode.write_note(spec, root, "data.split_seed: per_seed trains a "
                                       "teacher per seed (teacher@<seed>)")
        return run(spec, params, root)
    if seed is None:
        raise ConfigError(f"{stage}: --seed is required")
    tuning = stage == "tuning_teacher"
    dest = teachers.destination(params, seed, tuning)
    if tuning and not teachers.tuning_needs_teacher(params):
        return offmode.write_note(dest, root, "no tuned method distils the teacher "
                                   "(tune.enabled / tune.teacher_methods)")
    if params.data.per_seed:
        return run(dest, params, root)
    return teachers.publish_copy(params, seed, tuning, root)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--method", help="baselines / tuned: which method")
    parser.add_argument("--variant", default="full", help="kd_ablation / introspective variant")
    parser.add_argument("--seed", type=int, help="the run's seed (teacher: the seed whose "
                        "students distil it)")
    parser.add_argument("--params", default="params.yaml")
    return parser.parse_args(argv)


def entry(argv: list[str] | None = None) -> None:
    args = parse(argv)
    params = load_params(args.params)
    if args.stage in TEACHER_STAGES:
        report(train_teacher(args.stage, params, args.seed))
        return
    method = STAGE_METHOD.get(args.stage, args.method)
    known = allowed_methods(args.stage, params)
    if method not in known:
        raise ConfigError(f"{args.stage}: unknown method '{method}' (known: {', '.join(known)})")
    variants = REGISTRY[method].variants if args.stage in VARIANT_STAGES else ("full",)
    if args.variant not in variants:
        raise ConfigError(f"{args.stage}: unknown variant '{args.variant}' "
                          f"(known: {', '.join(variants)})")
    if args.seed is None:
        raise ConfigError(f"{args.stage}: --seed is required")
    spec = RunSpec(args.stage, method, args.variant, args.seed)
    if args.stage == "tuned":
        if not params.tune.enabled:  # no tuned rows: it would repeat baselines@<method>-<seed>
            report(offmode.write_note(spec, Path(), "tune.enabled is false: no tuned row "
                                      "is reported", run_files=True))
            return
        params = tuned_params(params, method)
    report(run(spec, params))


def report(metrics: dict) -> None:
    shown = ", ".join(f"{k} {metrics[k]:.4g}" for k in ("test_acc", "test_nll", "test_ece")
                      if k in metrics)
    print(f"[ilkd] done: {shown or 'nothing to train'}")


if __name__ == "__main__":
    main(entry)
