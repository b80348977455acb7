"""DVC stages ``tune`` (one trial of one method) and ``tune_select`` (best per method).

    python -m stages.tune trial --method kd --trial 0
    python -m stages.tune select
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


def trial(method: str, index: int) -> None:
    params = load_params()
    if method not in params.tune.methods or index not in params.tune.trials:
        raise ConfigError(f"tune: method '{method}' trial {index} is not in tune.methods / "
                          "tune.trials")
    group = f"{method}-{index}"
    record: dict = {"method": method, "trial": index, "skipped": not params.tune.enabled}
    if params.tune.enabled:
        overrides = trial_config(params, method, index)
        tuned = apply(params, overrides)
        runs = [run(RunSpec("tune", method, "full", seed, group=group), tuned)
                for seed in params.tune.seeds]
        record.update(overrides=overrides, seeds=params.tune.seeds,
                      val_acc=sum(r["val_acc"] for r in runs) / len(runs),
                      val_nll=sum(r["val_nll"] for r in runs) / len(runs))
        print(f"[ilkd] tune {group}: {overrides} -> val_acc {record['val_acc']:.2f}")
    atomic_write_json(TUNE_DIR / group / "trial.json", record)


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
    one = sub.add_parser("trial")
    one.add_argument("--method", required=True)
    one.add_argument("--trial", type=int, required=True)
    sub.add_parser("select")
    args = parser.parse_args(argv)
    if args.command == "trial":
        trial(args.method, args.trial)
    else:
        choose()


if __name__ == "__main__":
    main(entry)
