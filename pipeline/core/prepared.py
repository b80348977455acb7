"""The prepared dataset every stage after ``prepare`` reads: ``data.npz`` + ``meta.json``.

Images are uint8 ``(N, C, H, W)`` whatever the source, so every stage loads the
same bytes; the sha256 in ``meta.json`` is checked on every load. With
``data.split_seed: per_seed`` the file holds the whole training pool and every run
carves its own validation split and training subset from it (:meth:`Prepared.for_seed`).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import DataError

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
    def per_seed(self) -> bool:
        """Whether each seed draws its own training subset and validation split."""
        return self.meta["config"].get("split_seed") == "per_seed"

    def for_seed(self, seed: int) -> Prepared:
        """The data a run of ``seed`` trains on: itself, or with ``per_seed`` the
        validation split and training subset drawn with ``seed`` (the same draw for every
        method, so the runs of one seed stay paired)."""
        if not self.per_seed:
            return self
        cfg = self.meta["config"]
        y = self.y("train")
        train_idx, val_idx = carve(y, cfg["val_per_class"], cfg["train_per_class"],
                                   np.random.default_rng(seed))
        x = self.x("train")
        arrays = dict(self.arrays, x_train=x[train_idx], y_train=y[train_idx],
                      x_val=x[val_idx], y_val=y[val_idx])
        sizes = dict(self.meta["sizes"], train=len(train_idx), val=len(val_idx))
        return Prepared(arrays=arrays, meta=dict(self.meta, sizes=sizes, subset_seed=seed))

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


def stratified_pick(y: np.ndarray, per_class: int, rng: np.random.Generator,
                    what: str) -> np.ndarray:
    """Indices of ``per_class`` random samples of every class (sorted)."""
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < per_class:
            raise DataError(f"{what}: class {c} has only {len(idx)} samples, need {per_class}")
        picked.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def carve(y: np.ndarray, val_per_class: int, train_per_class: int | None,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` indices into a training split: ``val_per_class`` images of every
    class for validation, then ``train_per_class`` of each (all when None) from the rest."""
    val = np.empty(0, dtype=np.int64)
    if val_per_class:
        val = stratified_pick(y, val_per_class, rng, "data.val_per_class")
    rest = np.setdiff1d(np.arange(len(y)), val)
    if train_per_class:
        rest = rest[stratified_pick(y[rest], train_per_class, rng, "data.train_per_class")]
    return rest, val
