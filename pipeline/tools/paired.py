"""Two runs of one profile compared seed by seed: does a change that should not matter
(bf16 against fp32, other kernels, another machine) move any row by more than a margin?

    python -m pipeline.tools.paired ../look-bf16 ../look-fp32 --margin 0.5
    python -m pipeline.tools.paired A B --names bf16 fp32 --write docs/bf16-vs-fp32.md

``A`` and ``B`` are two checkouts that ran the same profile (``dvc repro``): the same
seeds, data and rows; their ``params.yaml`` may differ in ``runtime`` only (else the two
runs are different experiments and this refuses). Each row of the profile's tables, and
each seed's own teacher where every seed trains one, is paired by seed, ``D_s = top-1(A, s)
- top-1(B, s)`` on the same data subset, and decided with the claims' code
(``pipeline/results/decide.py``) at the two-sided rate ``alpha``: A > B, A < B,
equivalent within ``±margin`` (TOST: the ``1 - 2 alpha`` interval inside it), or undecided
with the pairs that would show equivalence at the observed spread.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pandas as pd

from pipeline.core.cli import main
from pipeline.core.config import Params, load_params
from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_text
from pipeline.results.decide import decide
from pipeline.results.design import Row, tables
from pipeline.train.teachers import destination

TEACHER = Row("teacher (each seed's)", "teacher", "ce")


def rows(params: Params) -> list[Row]:
    """Every distinct run of the profile's tables, in table order, under its first label
    (T3's "KD from a teacher" is T1's "KD (full)"); the teachers first when each seed
    trains its own."""
    out = [TEACHER] if params.data.per_seed else []
    seen: set[tuple[str, str]] = set()
    for row in (r for table in tables(params) for r in table.rows):
        if (row.stage, row.name) not in seen:
            seen.add((row.stage, row.name))
            out.append(row)
    return out


def run_folder(params: Params, row: Row, seed: int) -> Path:
    """Where ``row``'s run of ``seed`` lives below ``results/`` (a teacher: the one that
    seed's students distil)."""
    return (destination(params, seed) if row is TEACHER else row.spec(seed)).relative


def accuracy(root: Path, relative: Path) -> float:
    """A run's final top-1 (%) from its ``metrics.json``; a missing run is an error."""
    path = root / "results" / relative / "metrics.json"
    try:
        value = float(json.loads(path.read_text())["test_acc"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: no finished run ({exc.__class__.__name__}); run "
                          f"`dvc repro` in {root} first") from None
    return value


def same_experiment(a: Path, b: Path) -> Params:
    """The params both checkouts ran, which must agree outside ``runtime``."""
    params = [load_params(p / "params.yaml") for p in (a, b)]
    raw = [p.model_dump() for p in params]
    differ = sorted(k for k in raw[0].keys() | raw[1].keys()
                    if k != "runtime" and raw[0].get(k) != raw[1].get(k))
    if differ:
        raise ConfigError(f"{a} and {b} ran different experiments: params differ in "
                          f"{', '.join(differ)} (only `runtime` may)")
    return params[0]


def compare(a: Path, b: Path, margin: float, alpha: float = 0.05) -> pd.DataFrame:
    """One line per row: both means, the paired difference A − B and its verdict."""
    params = same_experiment(a, b)
    lines = []
    for row in rows(params):
        folders = [run_folder(params, row, s) for s in params.seeds]
        acc_a, acc_b = ([accuracy(root, f) for f in folders] for root in (a, b))
        d = decide([x - y for x, y in zip(acc_a, acc_b, strict=True)], margin, alpha)
        lines.append({"row": row.label, "pairs": d.n, "mean_a": sum(acc_a) / len(acc_a),
                      "mean_b": sum(acc_b) / len(acc_b), "d": d.mean, "sd": d.sd,
                      "low": d.low, "high": d.high, "eq_low": d.eq_low, "eq_high": d.eq_high,
                      "verdict": d.label(), "pairs_for_equivalence": d.n_equiv})
    return pd.DataFrame(lines)


def to_markdown(df: pd.DataFrame, names: tuple[str, str], margin: float, alpha: float) -> str:
    a, b = names

    def interval(lo: float, hi: float) -> str:
        return "—" if math.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"

    head = (f"| row | pairs | {a} top-1 | {b} top-1 | {a} − {b} (sd) | {1 - alpha:.0%} CI "
            f"| {1 - 2 * alpha:.0%} CI (TOST ±{margin:g}) | verdict | pairs for ±{margin:g} |")
    out = [head, "|" + "---|" * 9]
    for r in df.itertuples():
        need = "—" if r.pairs_for_equivalence is None or pd.isna(r.pairs_for_equivalence) \
            else str(int(r.pairs_for_equivalence))
        verdict = r.verdict.replace("A > B", f"{a} > {b}").replace("A < B", f"{a} < {b}")
        out.append(f"| {r.row} | {r.pairs} | {r.mean_a:.2f} | {r.mean_b:.2f} | {r.d:+.2f} "
                   f"({r.sd:.2f}) | {interval(r.low, r.high)} | "
                   f"{interval(r.eq_low, r.eq_high)} | {verdict} | {need} |")
    return "\n".join(out) + "\n"


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="a checkout that ran the profile")
    parser.add_argument("b", type=Path, help="the checkout it is compared with")
    parser.add_argument("--margin", type=float, default=0.5, help="top-1 points (default 0.5)")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--names", nargs=2, default=("A", "B"), help="how to call A and B")
    parser.add_argument("--write", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    text = to_markdown(compare(args.a, args.b, args.margin, args.alpha), tuple(args.names),
                       args.margin, args.alpha)
    print(text, end="")
    if args.write:
        atomic_write_text(args.write, text)


if __name__ == "__main__":
    main(entry)
