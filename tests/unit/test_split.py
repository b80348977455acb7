"""``data.split_seed``: a fixed split, or each seed's own training subset and validation
split (``per_seed``), and the teacher each student may distil."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.core.config import parse_params
from pipeline.core.errors import CheckpointError, DataError
from pipeline.core.models import build_model, load_teacher
from pipeline.core.prepared import load_prepared
from pipeline.core.sections import DataConfig, ModelConfig
from pipeline.prepare.datasets import prepare
from pipeline.train.teachers import shared_spec, teacher_file, teacher_spec, tuning_needs_teacher

from ..helpers import tiny_raw


def _pool(tmp_path: Path, **data) -> Path:
    cfg = DataConfig(name="digits", val_per_class=5, train_per_class=20, split_seed="per_seed",
                     **data)
    prepare(cfg, tmp_path)
    return tmp_path


def _rows(x: np.ndarray) -> set[bytes]:
    return {row.tobytes() for row in x}


def test_each_seed_draws_its_own_stratified_subset(tmp_path):
    pool = load_prepared(_pool(tmp_path))
    assert pool.per_seed and len(pool.y("val")) == 0
    assert len(pool.y("train")) == 1347  # digits' stratified 75% train split, uncarved
    a, again, b = pool.for_seed(0), pool.for_seed(0), pool.for_seed(1)
    for part in (a, b):
        assert np.bincount(part.y("train")).tolist() == [20] * 10  # per class, every class
        assert np.bincount(part.y("val")).tolist() == [5] * 10
        assert not _rows(part.x("train")) & _rows(part.x("val"))  # disjoint
        assert _rows(part.x("train")) <= _rows(pool.x("train"))
        assert np.array_equal(part.x("test"), pool.x("test"))  # the test split never varies
    # one seed, one subset (the runs of a seed stay paired); another seed, another subset
    assert np.array_equal(a.x("train"), again.x("train"))
    assert len(_rows(a.x("train")) & _rows(b.x("train"))) < 40
    assert (a.meta["subset_seed"], b.meta["subset_seed"]) == (0, 1)
    assert a.meta["sha256"] == pool.meta["sha256"]  # the teacher check reads the pool's


def test_a_fixed_split_is_the_same_for_every_seed(tmp_path):
    prepare(DataConfig(name="digits", val_per_class=5, train_per_class=20), tmp_path)
    fixed = load_prepared(tmp_path)
    assert fixed.for_seed(3) is fixed and len(fixed.y("train")) == 200


def test_per_seed_is_refused_where_it_would_draw_nothing():
    with pytest.raises(ValueError, match="data.split_seed: per_seed draws"):
        DataConfig(val_per_class=0, name="digits", split_seed="per_seed")
    with pytest.raises(ValueError, match="split_seed"):
        DataConfig(val_per_class=0, name="digits", split_seed="each")


def test_a_pool_too_small_fails_in_prepare(tmp_path):
    with pytest.raises(DataError, match="data.train_per_class: class 0 has only"):
        _pool(tmp_path, test_fraction=0.9)


def test_teachers_follow_the_split(base_raw):
    fixed = parse_params(tiny_raw(base_raw, seeds=[0, 1]), "t")
    # a fixed split: every seed distils the one teacher of seed teacher.seed
    assert {teacher_spec(fixed, s) for s in (0, 1, 100)} == {shared_spec(fixed)}
    assert shared_spec(fixed).folder("models").as_posix() == "models/teacher/shared/seed-0"
    raw = tiny_raw(base_raw, seeds=[0, 1])
    raw["data"]["split_seed"] = "per_seed"
    per_seed = parse_params(raw, "t")
    # per_seed: each seed its own, published where its students look; KD is tuned on seed
    # 100, whose teacher lives apart (the tuning stage depends on those only)
    assert [teacher_spec(per_seed, s).folder("models").as_posix() for s in (0, 1, 100)] == [
        "models/teacher/seed-0", "models/teacher/seed-1", "models/teacher/tuning/seed-100"]
    assert [teacher_file(per_seed, s).as_posix() for s in (1, 100)] == [
        "models/teacher/seed-1/model.pt", "models/teacher/tuning/seed-100/model.pt"]
    assert tuning_needs_teacher(per_seed)
    raw["tune"]["enabled"] = False
    assert not tuning_needs_teacher(parse_params(raw, "t"))


def test_a_student_refuses_a_teacher_of_another_subset(tmp_path):
    model = build_model("small_cnn", 10, 1, 0.25)
    path = tmp_path / "model.pt"
    meta = {"arch": "small_cnn", "width": 0.25, "data_sha256": "abc", "subset_seed": 1}
    torch.save({"state_dict": {"student": model.state_dict()}, "meta": meta}, path)
    cfg = ModelConfig(arch="small_cnn", width=0.25)
    assert load_teacher(path, "abc", 10, 1, cfg, subset_seed=1) is not None
    with pytest.raises(CheckpointError, match="subset of seed 1, this run's is seed 2"):
        load_teacher(path, "abc", 10, 1, cfg, subset_seed=2)
    with pytest.raises(CheckpointError, match="subset of seed 1, this run's is seed None"):
        load_teacher(path, "abc", 10, 1, cfg)  # a fixed-split student
