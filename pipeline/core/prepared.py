"""The prepared dataset every stage after ``prepare`` reads: ``data.npz`` + ``meta.json``.

Images are uint8 ``(N, C, H, W)`` whatever the source, so every stage loads the
same bytes; the sha256 in ``meta.json`` is checked on every load.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import DataError

PREPARED_DIR = Path("data/prepared")
DATA_FILE = "data.npz"
META_FILE = "meta.json"
SPLITS = ("train", "val", "test")


@dataclass
class Prepared:
    """A prepared dataset held in memory (uint8 images, int64 labels)."""

    arrays: dict[str, np.ndarray]
    meta: dict

    def x(self, split: str) -> np.ndarray:
        return self.arrays[f"x_{split}"]

    def y(self, split: str) -> np.ndarray:
        return self.arrays[f"y_{split}"]

    @property
    def num_classes(self) -> int:
        return len(self.meta["classes"])

    @property
    def in_channels(self) -> int:
        return int(self.meta["shape"][0])


def load_prepared(path: str | Path) -> Prepared:
    """Load and verify a prepared dataset; a mismatch names the file."""
    path = Path(path)
    data_file, meta_file = path / DATA_FILE, path / META_FILE
    for f in (data_file, meta_file):
        if not f.is_file():
            raise DataError(f"{f}: prepared data not found; run `dvc repro prepare` first")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{meta_file}: not valid JSON ({exc})") from None
    blob = data_file.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != meta.get("sha256"):
        raise DataError(
            f"{data_file}: checksum mismatch (file is corrupt or was edited); "
            "rerun `dvc repro prepare` (or `dvc checkout`)"
        )
    with np.load(io.BytesIO(blob)) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return Prepared(arrays=arrays, meta=meta)
