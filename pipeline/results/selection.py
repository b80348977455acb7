"""``tune_select``: the best tuning trial per method, written to ``params_tuned.yaml``.

The file holds one top-level key per tuned method with just its overrides, so
the ``tuned`` stages can list ``params_tuned.yaml: [<method>]`` as a DVC param:
a method whose choice did not change is not retrained. How each choice was made
(trial, validation scores) sits under ``selection``, which no training stage reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.paths import TUNE_RECORD, TUNED_FILE


def select(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Best trial per method: highest mean val accuracy, then lowest mean val NLL."""
    best: dict[str, dict[str, Any]] = {}
    for trial in trials:
        key = (trial["val_acc"], -trial["val_nll"])
        current = best.get(trial["method"])
        if current is None or key > (current["val_acc"], -current["val_nll"]):
            best[trial["method"]] = trial
    return best


def write_tuned(best: dict[str, Any], methods: list[str], path: Path = TUNED_FILE) -> None:
    """Every method in ``methods`` gets a key (``{}``: train with the defaults), as DVC needs
    it for the stages that list ``params_tuned.yaml: [<method>]``."""
    from pipeline.core.io import atomic_write_text

    body: dict[str, Any] = {m: best[m]["overrides"] if m in best else {}
                            for m in sorted(set(methods))}
    body["selection"] = {m: {"trial": t["trial"], "val_acc": round(t["val_acc"], 4),
                             "val_nll": round(t["val_nll"], 5)} for m, t in sorted(best.items())}
    header = ("# Written by `dvc repro tune_select`: the configuration each method trains with\n"
              "# in the `tuned` stage, chosen by mean validation accuracy. Do not edit.\n")
    atomic_write_text(path, header + yaml.safe_dump(body, sort_keys=True))


def read_trials(folder: Path) -> list[dict[str, Any]]:
    """Every trial record below ``results/tune`` (``<method>/trial-<k>/trial.json``)."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob(f"*/trial-*/{TUNE_RECORD}"))]
