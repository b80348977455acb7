"""Atomic file writes: a killed process never leaves a half-written output.

Each writer fills a temporary file in the destination folder and renames it over
the target (``os.replace`` is atomic on POSIX within one file system).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows may have different keys (e.g. metrics that start after a warm-up)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def write(handle: IO[bytes]) -> None:
        import io

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        handle.write(text.getvalue().encode())

    atomic_write(path, write)


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def write_matrix(path: str | Path, matrix, classes: Sequence[str]) -> None:
    """A class x class matrix as CSV (rows: true class)."""
    header = "true_class," + ",".join(classes)
    rows = [f"{c}," + ",".join(f"{v:.6f}" for v in row) for c, row in zip(classes, matrix,
                                                                        strict=True)]
    atomic_write_text(path, "\n".join([header, *rows]) + "\n")


def read_matrix(path: str | Path):
    """A matrix written by :func:`write_matrix` (rows and columns in class order)."""
    import pandas as pd

    return pd.read_csv(path, index_col=0).to_numpy()
