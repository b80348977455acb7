"""Write every table (csv + md) and figure of the ``aggregate`` stage.

``all_tables.md`` is rendered from the tables' frames by :func:`all_tables_markdown`, the
one renderer ``make decide --write`` also uses to re-render a committed report; the teacher
line beside them is kept in ``teacher.md`` so that nothing has to be read back out of the
markdown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.core.config import Params
from pipeline.core.io import atomic_write_text, read_matrix
from pipeline.core.paths import SURFACE_DIR
from pipeline.core.runs import RunSpec
from pipeline.figures import (
    accuracy_bars,
    accuracy_curves,
    reliability_diagrams,
    response_surface,
    save_figure,
    similarity_heatmaps,
)
from pipeline.methods import REGISTRY
from pipeline.results.aggregate import (
    histories,
    pooled_reliability,
    similarity_rows,
    summarize,
    teacher_line,
)
from pipeline.results.claims import claim_rows, claims_markdown, look_alpha
from pipeline.results.design import CE_ROW, default_row, tables
from pipeline.results.render import similarity_markdown, to_markdown
from pipeline.results.surface import surface_frame, surface_markdown

TEACHER_FILE = "teacher.md"  # the teacher's accuracy beside the CE student's (one line)


def all_tables_markdown(params: Params, teacher: str, frames: dict[str, pd.DataFrame],
                        claims: pd.DataFrame | None = None,
                        similarity: pd.DataFrame | None = None) -> str:
    """``all_tables.md``: the teacher line, T1-T4 (``frames`` by table key, in the design's
    order and with its titles), the claims and IL's similarity to the teacher."""
    parts = [teacher]
    parts += [to_markdown(frames[t.key], t.title) for t in tables(params) if t.key in frames]
    if claims is not None and not claims.empty:
        parts.append(claims_markdown(claims, params.claims.looks))
    if similarity is not None and not similarity.empty:
        parts.append(similarity_markdown(similarity))
    return "\n".join(p for p in parts if p)


def write_all(params: Params, results: Path, tables_dir: Path, figures_dir: Path,
              teacher_similarity: np.ndarray | None = None) -> list[Path]:
    """Write every table (csv + md) and figure; return the written paths.

    ``teacher_similarity``: the teacher's mean softmax per true class on the test split
    (the stage computes it from ``models/teacher``), compared with IL's own similarity.
    """
    seeds = params.seeds
    margin, alpha = params.claims.margin, look_alpha(params)
    written: list[Path] = []
    all_tables = tables(params)
    teacher = teacher_line(results, all_tables[0].reference, params)
    frames: dict[str, pd.DataFrame] = {}
    for table in all_tables:
        df = frames[table.key] = summarize(table, results, seeds, margin, alpha)
        csv, md = tables_dir / f"{table.key}.csv", tables_dir / f"{table.key}.md"
        atomic_write_text(csv, df.to_csv(index=False))
        atomic_write_text(md, to_markdown(df, table.title))
        fig = figures_dir / f"{table.key}_accuracy.png"
        save_figure(accuracy_bars(df, table.title), fig)
        curves = figures_dir / f"{table.key}_curves.png"
        save_figure(accuracy_curves({r.label: histories(results, r, seeds) for r in table.rows},
                                    table.title + " — test accuracy per epoch"), curves)
        written += [csv, md, fig, curves]
    claims = claim_rows(params, results, seeds)
    similarity = similarity_rows(results, params, teacher_similarity)
    for name, df in (("claims", claims), ("similarity_vs_teacher", similarity)):
        if not df.empty:  # a CSV when it has rows
            atomic_write_text(tables_dir / f"{name}.csv", df.to_csv(index=False))
            written.append(tables_dir / f"{name}.csv")
    atomic_write_text(tables_dir / TEACHER_FILE, teacher)
    all_md = tables_dir / "all_tables.md"
    atomic_write_text(all_md, all_tables_markdown(params, teacher, frames, claims, similarity))
    written += [tables_dir / TEACHER_FILE, all_md]

    written += write_surface(params, results, tables_dir, figures_dir)

    candidates = [r for r in (CE_ROW, default_row("label_smoothing", params),
                              default_row("kd", params), default_row("introspective", params))
                  if r is not None]
    bins = {r.label: b for r in candidates if (b := pooled_reliability(results, r, seeds))}
    if bins:
        path = figures_dir / "reliability.png"
        save_figure(reliability_diagrams(bins), path)
        written.append(path)

    il_files = [results / RunSpec.of("introspective", "full", s).relative
                for s in seeds]
    il = [read_matrix(f / "similarity.csv") for f in il_files if (f / "similarity.csv").is_file()]
    if il:
        from pipeline.methods.analysis import off_diagonal

        il_mean = np.mean(il, axis=0)
        rho = None
        if teacher_similarity is not None:
            rho = float(stats.spearmanr(off_diagonal(il_mean),
                                        off_diagonal(teacher_similarity)).statistic)
        classes = [str(c) for c in pd.read_csv(il_files[0] / "similarity.csv", index_col=0).columns]
        path = figures_dir / "similarity_il_vs_teacher.png"
        save_figure(similarity_heatmaps(il_mean, teacher_similarity, classes, rho), path)
        written.append(path)
    return written


def write_surface(params: Params, results: Path, tables_dir: Path,
                  figures_dir: Path) -> list[Path]:
    """The response surface's table (csv + md) and figure, when any point has run."""
    df = surface_frame(params, results / SURFACE_DIR.name)
    if df.empty:
        return []
    s = params.surface
    csv, md, png = (tables_dir / "surface.csv", tables_dir / "surface.md",
                    figures_dir / "surface.png")
    atomic_write_text(csv, df.to_csv(index=False))
    atomic_write_text(md, surface_markdown(params, df))
    save_figure(response_surface(df, s.knobs, REGISTRY[s.method].label,
                                 REGISTRY[s.reference].label), png)
    return [csv, md, png]
