"""A method's response surface: its validation accuracy over two knobs of its section.

A tuning budget answers "what is the method's best recipe?"; a reviewer also asks whether
*any* region of the method's space beats the reference, not only the chosen point. Each
point of ``surface.x`` x ``surface.y`` trains the method at its tuned recipe
(``params_tuned.yaml``; the defaults when tuning is off) with the two knobs and
``surface.fixed`` set, once per ``surface.seeds``; the reference method trains at its own
tuned recipe on the same seeds (each seed is one subset, shared by both). Only validation
scores are read: the figure is a map of the search space, never a claim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.core.config import Params
from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_json
from pipeline.core.paths import MODELS, SURFACE_DIR, SURFACE_RECORD
from pipeline.core.runs import SURFACE_REFERENCE, RunSpec, surface_point
from pipeline.train.runner import run
from pipeline.train.tune import apply, tuned_params


def value_of(given: str, values: list[Any], axis: str) -> Any:
    """The configured value that DVC wrote as ``given`` on the command line."""
    for value in values:
        if str(value) == given:
            return value
    raise ConfigError(f"surface.{axis}: {given!r} is not one of its values "
                      f"({', '.join(map(str, values))})")


def point_params(params: Params, x: Any, y: Any) -> Params:
    """The method's tuned recipe with the point's two knobs and ``surface.fixed`` set."""
    s = params.surface
    overrides = {**s.fixed, s.knobs[0]: x, s.knobs[1]: y}
    return apply(tuned_params(params, s.method), {s.method: overrides})


def _train(params: Params, method: str, group: str, settings: dict[str, Any],
           root: Path) -> dict[str, Any]:
    """Train ``method`` on every surface seed into ``<group>/`` and write its record."""
    s = params.surface
    record: dict[str, Any] = {"method": method, **settings, "seeds": s.seeds,
                              "skipped": not s.enabled}
    if s.enabled:
        runs = [run(RunSpec("surface", method, "full", seed, group=group), params, root)
                for seed in s.seeds]
        record.update({k: [r[k] for r in runs] for k in ("val_acc", "val_nll")})
        mean = sum(record["val_acc"]) / len(runs)
        print(f"[ilkd] surface {group}: {settings or method} -> val_acc {mean:.2f}")
    atomic_write_json(root / SURFACE_DIR / group / SURFACE_RECORD, record)
    (root / MODELS / "surface" / group).mkdir(parents=True, exist_ok=True)  # a declared output
    return record


def train_point(params: Params, x: str, y: str, root: Path = Path()) -> dict[str, Any]:
    """``surface@<x>-<y>``: the method at one point of the grid, on every surface seed."""
    s = params.surface
    x_value, y_value = value_of(x, s.x, "x"), value_of(y, s.y, "y")
    settings = {"knobs": {s.knobs[0]: x_value, s.knobs[1]: y_value}, "fixed": s.fixed}
    return _train(point_params(params, x_value, y_value), s.method,
                  surface_point(x_value, y_value), settings, root)


def train_reference(params: Params, root: Path = Path()) -> dict[str, Any]:
    """``surface_reference``: the reference method at its tuned recipe on the same seeds."""
    s = params.surface
    return _train(tuned_params(params, s.reference), s.reference, SURFACE_REFERENCE, {}, root)
