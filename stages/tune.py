"""DVC stage ``tune@<method>``: every trial of one method's equal-budget search.

    python -m stages.tune --method kd

One stage instance per method, not per trial: a stage process costs seconds of
start-up and DVC lock-file bookkeeping, which on the quick profile outweighs a
trial's training. Each trial's runs still checkpoint, so an interrupted
instance resumes where it stopped.
"""

from __future__ import annotations

import argparse

from pipeline.core.cli import main
from pipeline.core.config import load_params
from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_json
from pipeline.core.paths import TUNE_DIR, TUNE_MODELS
from pipeline.core.runs import RunSpec
from pipeline.train.runner import run
from pipeline.train.tune import apply, trial_config


def trials(method: str) -> None:
    params = load_params()
    if method not in params.tune.all_methods:
        raise ConfigError(f"tune: method '{method}' is not in tune.methods or "
                          f"tune.teacher_methods ({', '.join(params.tune.all_methods)})")
    # every configuration up front: a too-small search space fails before any training
    configs = ({i: trial_config(params, method, i) for i in params.tune.trials}
               if params.tune.enabled else {})
    for index in params.tune.trials:
        record: dict = {"method": method, "trial": index, "skipped": not params.tune.enabled}
        if params.tune.enabled:
            overrides = configs[index]
            tuned = apply(params, overrides)
            group = f"{method}/trial-{index}"
            runs = [run(RunSpec("tune", method, "full", seed, group=group), tuned)
                    for seed in params.tune.seeds]
            record.update(overrides=overrides, seeds=params.tune.seeds,
                          val_acc=sum(r["val_acc"] for r in runs) / len(runs),
                          val_nll=sum(r["val_nll"] for r in runs) / len(runs))
            print(f"[ilkd] tune {group}: {overrides} -> val_acc {record['val_acc']:.2f}")
        atomic_write_json(TUNE_DIR / method / f"trial-{index}.json", record)
    # the stage's declared output: empty when tuning is off (no trial trained a model)
    (TUNE_MODELS / method).mkdir(parents=True, exist_ok=True)


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True)
    trials(parser.parse_args(argv).method)


if __name__ == "__main__":
    main(entry)
