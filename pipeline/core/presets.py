"""Presets: whole profiles as ``presets/<name>.yaml``, each an overlay of ``presets/quick.yaml``.

What a preset *is* lives here, beside the params schema: every training run compares the
params it reads with its profile's preset to name its MLflow parent after what differs
(``pipeline/train/runner.py``). Writing a preset into ``params.yaml`` with the base's
comments kept is the command line's job (``pipeline/tools/presets.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.config import Params, parse_params
from pipeline.core.errors import ConfigError
from pipeline.core.paths import PRESETS

BASE = "quick"


def available(folder: Path = PRESETS) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def merge(base: Any, overlay: dict[str, Any], where: str, as_list: Any = list) -> None:
    """Lay ``overlay`` over ``base`` in place: mappings key by key, anything else replaced
    (a list through ``as_list``); a method's tuning grid (``tune.own.<method>``) is replaced
    whole, as its keys are the method's knobs, not quick's (params validation checks them)."""
    for key, value in overlay.items():
        if where == "tune.own.":  # a method's grid is whole: the preset's replaces quick's
            base[key] = value
            continue
        if key not in base:
            raise ConfigError(f"{where}{key}: not a key of presets/{BASE}.yaml (typo?)")
        if isinstance(value, dict) and isinstance(base[key], dict):
            merge(base[key], value, f"{where}{key}.", as_list)
        elif isinstance(value, list):
            base[key] = as_list(value)
        else:
            base[key] = value


def load_preset(name: str, folder: Path = PRESETS) -> Params:
    """The validated params of preset ``name``, without writing ``params.yaml`` (plain
    YAML through libyaml's parser: a few milliseconds)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    source = folder / f"{name}.yaml"
    if not source.is_file():
        raise ConfigError(f"{source}: no such preset (available: {', '.join(available(folder))})")
    merged = yaml.load((folder / f"{BASE}.yaml").read_text(), Loader=loader)
    if name != BASE:
        overlay = yaml.load(source.read_text(), Loader=loader) or {}
        if not isinstance(overlay, dict):
            raise ConfigError(f"{source}: a preset is a mapping of params keys")
        merge(merged, overlay, "")
    return parse_params(merged, str(source))
