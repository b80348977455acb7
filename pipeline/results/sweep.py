"""Summarise a DVC experiment grid (``dvc exp run --queue -S ...``) as one table.

    dvc exp show -A --json > exps.json
    python -m pipeline.results.sweep exps.json --stage introspective --variant full --prefix il-

Rows are experiments, sorted by mean *validation* accuracy (ties: lower val NLL):
hyper-parameters are chosen on validation data, never on the test split.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.config import flatten

SHOWN = ("val_acc", "val_nll", "test_acc", "test_nll", "test_ece", "target_gt_prob")


def experiments(show: list[dict]) -> Iterable[tuple[str, dict]]:
    """``(name, data)`` for every experiment in ``dvc exp show --json`` output."""
    for commit in show:
        for group in commit.get("experiments") or []:
            for rev in group.get("revs", []):
                if rev.get("name") and rev.get("data"):
                    yield rev["name"], rev["data"]


def summarize_sweep(show: list[dict], stage: str, variant: str, prefix: str = "") -> pd.DataFrame:
    records = []
    for name, data in experiments(show):
        if not name.startswith(prefix):
            continue
        metrics = data.get("metrics", {})
        runs = [v["data"] for k, v in metrics.items()
                if k.startswith(f"results/{stage}/{variant}-") and "data" in v]
        if not runs:
            continue
        params = flatten(data["params"]["params.yaml"]["data"].get(stage, {}))
        record: dict[str, object] = {"experiment": name, "seeds": len(runs)}
        record.update({k: v for k, v in params.items() if k != "variants"})
        for key in SHOWN:
            values = [r[key] for r in runs if key in r]
            if values:
                std = np.std(values, ddof=1) if len(values) > 1 else 0.0
                record[key] = f"{np.mean(values):.3f} ± {std:.3f}"
                record[f"_{key}"] = float(np.mean(values))
        records.append(record)
    df = pd.DataFrame.from_records(records)
    if df.empty:
        return df
    df = df.sort_values(["_val_acc", "_val_nll"], ascending=[False, True])
    varying = [c for c in df.columns if not c.startswith("_") and c not in SHOWN
               and c not in ("experiment", "seeds") and df[c].astype(str).nunique() > 1]
    return df[["experiment", "seeds", *varying, *[k for k in SHOWN if k in df]]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("show_json", type=Path)
    parser.add_argument("--stage", default="introspective")
    parser.add_argument("--variant", default="full")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args(argv)
    df = summarize_sweep(json.loads(args.show_json.read_text()), args.stage, args.variant,
                         args.prefix)
    print(df.to_markdown(index=False) if hasattr(df, "to_markdown") else df.to_string())


if __name__ == "__main__":
    main()
