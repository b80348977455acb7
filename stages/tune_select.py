"""DVC stage ``tune_select``: the best trial per method -> ``params_tuned.yaml``.

    python -m stages.tune_select
"""

from __future__ import annotations

import math

from pipeline.core.cli import main
from pipeline.core.config import load_params
from pipeline.core.paths import TUNE_DIR, TUNED_FILE
from pipeline.results.selection import read_trials, select, write_tuned


def entry() -> None:
    params = load_params()
    methods = params.tune.all_methods
    trials = [t for t in read_trials(TUNE_DIR)
              if not t["skipped"] and t["method"] in methods and math.isfinite(t["val_acc"])]
    best = select(trials)
    # the response surface reads its two methods' keys too ({} when not tuned: the defaults)
    write_tuned(best, [*methods, params.surface.method, params.surface.reference], TUNED_FILE)
    for method, chosen in sorted(best.items()):
        print(f"[ilkd] tuned {method}: {chosen['overrides']} (val_acc {chosen['val_acc']:.2f})")


if __name__ == "__main__":
    main(entry)
