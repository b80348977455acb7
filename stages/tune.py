"""DVC stages ``tune`` (every trial of one method) and ``tune_select`` (best per method).

    python -m stages.tune trials --method kd
    python -m stages.tune select

One stage instance per method, not per trial: a stage process costs seconds of
start-up and DVC lock-file bookkeeping, which on the quick profile outweighs a
trial's training. Each trial's runs still checkpoint, so an interrupted
instance resumes where it stopped.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from pipeline.cli import main
from pipeline.config import load_params
from pipeline.errors import ConfigError
from pipeline.io import atomic_write_json
from pipeline.runner import RunSpec, run
from pipeline.tune import TUNED_FILE, apply, read_trials, select, trial_config, write_tuned

TUNE_DIR = Path("results/tune")


def trials(method: str) -> None:
    params = load_params()
    if method not in params.tune.methods:
        raise ConfigError(f"tune: method '{method}' is not in tune.methods "
                          f"({', '.join(params.tune.methods)})")
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


def choose() -> None:
    params = load_params()
    trials = [t for t in read_trials(TUNE_DIR)
              if not t["skipped"] and t["method"] in params.tune.methods
              and math.isfinite(t["val_acc"])]
    best = select(trials)
    write_tuned(best, TUNED_FILE)
    for method, chosen in sorted(best.items()):
        print(f"[ilkd] tuned {method}: {chosen['overrides']} (val_acc {chosen['val_acc']:.2f})")


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("trials", help="every trial of one method")
    one.add_argument("--method", required=True)
    sub.add_parser("select", help="best trial per method -> params_tuned.yaml")
    args = parser.parse_args(argv)
    if args.command == "trials":
        trials(args.method)
    else:
        choose()


if __name__ == "__main__":
    main(entry)
