"""Equal-budget hyper-parameter tuning on the validation split.

Every tuned method gets exactly ``len(tune.trials)`` configurations, drawn
without replacement (seeded) from the product of the shared knobs
(``tune.shared``: learning rate, weight decay) and its own (``tune.own``:
epsilon, beta, alpha, T, gt_prob, ...). Each configuration trains once per
tuning seed; the configuration with the best mean validation accuracy (ties:
lower validation NLL) wins. The test split is never looked at.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
from pathlib import Path
from typing import Any

import yaml

from .config import Params, parse_params
from .errors import ConfigError

TUNED_FILE = Path("params_tuned.yaml")


def search_space(params: Params, method: str) -> list[dict[str, dict[str, Any]]]:
    """Every candidate as nested overrides, e.g. ``{"train": {"lr": 0.1}, "kd": {"T": 4}}``."""
    axes: list[tuple[str, str, list[Any]]] = [
        ("train", key, values) for key, values in params.tune.shared.items()]
    axes += [(method, key, values) for key, values in params.tune.own.get(method, {}).items()]
    candidates = []
    for combo in itertools.product(*[values for _, _, values in axes]):
        overrides: dict[str, dict[str, Any]] = {}
        for (section, key, _), value in zip(axes, combo, strict=True):
            overrides.setdefault(section, {})[key] = value
        candidates.append(overrides)
    return candidates


def trial_config(params: Params, method: str, trial: int) -> dict[str, dict[str, Any]]:
    """The ``trial``-th configuration of ``method`` (the same for every process)."""
    space = search_space(params, method)
    n = len(params.tune.trials)
    if len(space) < n:
        raise ConfigError(f"tune: {method} has only {len(space)} configurations for {n} trials; "
                          "widen tune.shared / tune.own or use fewer tune.trials")
    order = list(range(len(space)))
    random.Random(f"{params.tune.sample_seed}-{method}").shuffle(order)
    return space[order[params.tune.trials.index(trial)]]


def apply(params: Params, overrides: dict[str, dict[str, Any]]) -> Params:
    """Params with ``train`` overrides applied to the student recipe and method sections merged."""
    raw = params.model_dump(mode="json")
    for section, values in overrides.items():
        target = raw["student"]["train"] if section == "train" else raw[section]
        target.update(copy.deepcopy(values))
    return parse_params(raw, "params (tuned)")


def select(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Best trial per method: highest mean val accuracy, then lowest mean val NLL."""
    best: dict[str, dict[str, Any]] = {}
    for trial in trials:
        key = (trial["val_acc"], -trial["val_nll"])
        current = best.get(trial["method"])
        if current is None or key > (current["val_acc"], -current["val_nll"]):
            best[trial["method"]] = trial
    return best


def write_tuned(best: dict[str, Any], path: Path = TUNED_FILE) -> None:
    from .io import atomic_write_text

    body = {m: {"overrides": t["overrides"], "trial": t["trial"],
                "val_acc": round(t["val_acc"], 4), "val_nll": round(t["val_nll"], 5)}
            for m, t in sorted(best.items())}
    header = ("# Written by `dvc repro tune_select`: the configuration each method trains with\n"
              "# in the `tuned` stage, chosen by mean validation accuracy. Do not edit.\n")
    atomic_write_text(path, header + yaml.safe_dump(body, sort_keys=True))


def tuned_params(params: Params, method: str, path: Path = TUNED_FILE) -> Params:
    """The method's tuned params; the defaults when tuning is off or found nothing for it."""
    if not params.tune.enabled:
        return params
    if not path.is_file():
        raise ConfigError(f"{path}: tuned params not found; run `dvc repro tune_select` first")
    chosen = (yaml.safe_load(path.read_text()) or {}).get(method)
    return apply(params, chosen["overrides"]) if chosen else params


def read_trials(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/trial-*.json"))]
