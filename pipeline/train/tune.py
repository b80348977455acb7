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
import random
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.config import Params, parse_params
from pipeline.core.errors import ConfigError
from pipeline.core.paths import TUNED_FILE


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


def tuned_params(params: Params, method: str, path: Path = TUNED_FILE) -> Params:
    """The method's tuned params; the defaults when tuning is off or found nothing for it."""
    if not params.tune.enabled:
        return params
    if not path.is_file():
        raise ConfigError(f"{path}: tuned params not found; run `dvc repro tune_select` first")
    chosen = (yaml.safe_load(path.read_text()) or {}).get(method)
    return apply(params, chosen) if chosen else params
