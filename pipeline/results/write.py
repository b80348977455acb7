"""Write every table (csv + md) and figure of the ``aggregate`` stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.core.config import Params
from pipeline.core.io import atomic_write_text, read_matrix
from pipeline.core.runs import RunSpec
from pipeline.figures import (
    accuracy_bars,
    accuracy_curves,
    reliability_diagrams,
    save_figure,
    similarity_heatmaps,
)
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
    markdown = [teacher_line(results, all_tables[0].reference, params)]
    for table in all_tables:
        df = summarize(table, results, seeds, margin, alpha)
        csv, md = tables_dir / f"{table.key}.csv", tables_dir / f"{table.key}.md"
        atomic_write_text(csv, df.to_csv(index=False))
        text = to_markdown(df, table.title)
        atomic_write_text(md, text)
        markdown.append(text)
        fig = figures_dir / f"{table.key}_accuracy.png"
        save_figure(accuracy_bars(df, table.title), fig)
        curves = figures_dir / f"{table.key}_curves.png"
        save_figure(accuracy_curves({r.label: histories(results, r, seeds) for r in table.rows},
                                    table.title + " — test accuracy per epoch"), curves)
        written += [csv, md, fig, curves]
    extra = (("claims", claim_rows(params, results, seeds),
              lambda df: claims_markdown(df, params.claims.looks)),
             ("similarity_vs_teacher", similarity_rows(results, params, teacher_similarity),
              similarity_markdown))
    for name, df, render in extra:  # CSV + a section of all_tables.md, when it has rows
        if not df.empty:
            csv = tables_dir / f"{name}.csv"
            atomic_write_text(csv, df.to_csv(index=False))
            markdown.append(render(df))
            written.append(csv)
    all_md = tables_dir / "all_tables.md"
    atomic_write_text(all_md, "\n".join(m for m in markdown if m))
    written.append(all_md)

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
