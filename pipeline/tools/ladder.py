"""The regime ladder's figure and tables from the rungs' committed reports: ``make ladder``.

    python -m pipeline.tools.ladder                          # every rung of RUNGS with a report
    python -m pipeline.tools.ladder reports/ladder-100 reports/cifar10-decide

Writes ``reports/ladder/``: ``ladder.png`` (Δ vs CE per core comparison against the rung's
CE accuracy), ``deltas.csv`` and ``verdicts.md`` (each claim's verdict per rung, and whether
it is the same at every rung). A rung is a report of a preset that differs from the others
only in data and training (``presets/ladder-*.yaml``); run each with ``make preset`` and
``make repro J=2``, ``make decide`` per look, then ``make readme`` to commit its report.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pandas as pd

from pipeline.core.cli import main as cli_main
from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_text
from pipeline.core.paths import REPORTS
from pipeline.results.ladder import claim_verdicts, ladder_figure, rung_rows

RUNGS = ("ladder-100", "cifar10-decide", "ladder-1000")  # 100, 300, 1,000 images per class


def verdicts_markdown(rows: pd.DataFrame, claims: pd.DataFrame) -> str:
    """The claims table per rung, a line per claim on whether its verdict moved, and the
    rungs' positions."""
    rungs = rows.drop_duplicates("rung").sort_values("ce_acc")
    lines = ["### The regime ladder", "",
             "| rung | train images / class | teacher test top-1 (%) | CE test top-1 (%) | "
             "seeds |", "|---|---|---|---|---|"]
    lines += [f"| {r.rung} | {r.train_per_class} | "
              f"{'—' if pd.isna(r.teacher_acc) else f'{r.teacher_acc:.2f}'} | {r.ce_acc:.2f} | "
              f"{int(r.seeds)} |" for r in rungs.itertuples()]
    ordered = claims[[r for r in rungs["rung"] if r in claims.columns]]
    lines += ["", "| claim | " + " | ".join(ordered.columns) + " |",
              "|---|" + "---|" * len(ordered.columns)]
    lines += [f"| {claim} | " + " | ".join(cells) + " |"
              for claim, cells in ordered.iterrows()]
    lines += [""]
    for claim, cells in ordered.iterrows():
        lines.append(f"- {claim}: {movement(cells)}")
    return "\n".join(lines) + "\n"


def movement(cells: pd.Series) -> str:
    """Whether a claim's verdict moved across rungs. An undecided rung lacks power, which is
    not a move; nor are two decided verdicts that one difference could satisfy at every
    rung (``A > B, ≥ 1`` and ``A > B``; ``equivalent (±1)`` and ``A < B``). A move is two
    decided verdicts that no single difference satisfies (``A > B`` and ``A < B``)."""
    verdicts = {rung: cell.rsplit(" (", 1)[0] for rung, cell in cells.items() if cell != "—"}
    decided = {r: v for r, v in verdicts.items() if not v.startswith("undecided")}
    undecided = [r for r in verdicts if r not in decided]
    rest = f"; undecided at {', '.join(undecided)}" if undecided else ""
    if not decided:
        return "undecided at every rung"
    listed = ", ".join(f"{v} ({r})" for r, v in decided.items())
    if len(set(decided.values())) > 1:
        bounds = [allowed(v) for v in decided.values()]
        if max(lo for lo, _ in bounds) >= min(hi for _, hi in bounds):
            return "moves: " + " → ".join(f"{v} ({r})" for r, v in decided.items())
        return f"no move: compatible verdicts {listed}{rest}"
    (verdict,) = set(decided.values())
    if not undecided:
        return f"{verdict} at every rung"
    return f"{verdict} where decided ({', '.join(decided)}){rest}"


def allowed(verdict: str) -> tuple[float, float]:
    """The differences (A − B) a decided verdict allows, from its label
    (``pipeline.results.decide.Decision.label``)."""
    if verdict.startswith("equivalent"):
        margin = float(re.search(r"±([\d.]+)", verdict).group(1))
        return -margin, margin
    if verdict.startswith("A > B"):
        found = re.search(r"≥ ([\d.]+)", verdict)
        return (float(found.group(1)) if found else 0.0), math.inf
    if verdict.startswith("A < B"):
        return -math.inf, 0.0
    raise ValueError(f"not a decided verdict: {verdict!r}")


def write(reports: list[Path], out: Path = REPORTS / "ladder") -> list[Path]:
    rows = pd.concat([rung_rows(r) for r in reports], ignore_index=True)
    claims = claim_verdicts(reports)
    out.mkdir(parents=True, exist_ok=True)
    from pipeline.figures import save_figure

    paths = [out / "deltas.csv", out / "verdicts.md", out / "ladder.png"]
    atomic_write_text(paths[0], rows.to_csv(index=False))
    atomic_write_text(paths[1], verdicts_markdown(rows, claims))
    save_figure(ladder_figure(rows), paths[2])
    return paths


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="*", type=Path,
                        help=f"report folders (default: {', '.join(RUNGS)} where committed)")
    args = parser.parse_args(argv)
    reports = args.reports or [REPORTS / r for r in RUNGS if (REPORTS / r).is_dir()]
    missing = [str(r) for r in reports if not (r / "tables" / "claims.csv").is_file()]
    if missing:
        raise ConfigError(f"not a report with a claims table: {', '.join(missing)}")
    if not reports:
        raise ConfigError(f"no rung has a report yet ({', '.join(RUNGS)}): run a ladder preset")
    for path in write(reports):
        print(f"[ilkd] {path}")


if __name__ == "__main__":
    cli_main(entry)
