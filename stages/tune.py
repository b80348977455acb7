"""DVC stage ``tune@<method>-<trial>``: one trial of one method's equal-budget search.

    python -m stages.tune --method kd --trial 2

One stage instance per trial, so parallel workers (``parallel -j``, GPU packing) share
a method's trials instead of running them one after another, and ``tune_select``
waits for them all. The trial trains one run per tuning seed, each checkpointed.
"""

from __future__ import annotations

import argparse

from pipeline.core.cli import main
from pipeline.core.config import load_params
from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_json
from pipeline.core.paths import TUNE_DIR, TUNE_MODELS, TUNE_RECORD
from pipeline.core.runs import RunSpec
from pipeline.train.runner import run
from pipeline.train.tune import apply, trial_config


def trial(method: str, index: int) -> None:
    params = load_params()
    if method not in params.tune.all_methods:
        raise ConfigError(f"tune: method '{method}' is not in tune.methods or "
                          f"tune.teacher_methods ({', '.join(params.tune.all_methods)})")
    if index not in params.tune.trials:
        raise ConfigError(f"tune: trial {index} is not in tune.trials {params.tune.trials}")
    group = f"{method}/trial-{index}"
    record: dict = {"method": method, "trial": index, "skipped": not params.tune.enabled}
    if params.tune.enabled:
        overrides = trial_config(params, method, index)  # a too-small space fails here
        tuned = apply(params, overrides)
        runs = [run(RunSpec("tune", method, "full", seed, group=group), tuned)
                for seed in params.tune.seeds]
        record.update(overrides=overrides, seeds=params.tune.seeds,
                      val_acc=sum(r["val_acc"] for r in runs) / len(runs),
                      val_nll=sum(r["val_nll"] for r in runs) / len(runs))
        print(f"[ilkd] tune {group}: {overrides} -> val_acc {record['val_acc']:.2f}")
    atomic_write_json(TUNE_DIR / group / TUNE_RECORD, record)
    # the stage's declared output: empty when tuning is off (no trial trained a model)
    (TUNE_MODELS / group).mkdir(parents=True, exist_ok=True)


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True)
    parser.add_argument("--trial", type=int, required=True)
    args = parser.parse_args(argv)
    trial(args.method, args.trial)


if __name__ == "__main__":
    main(entry)
