"""Datasets: shapes, determinism, class balance, splits, checksums, the synthetic structure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from pipeline.core.errors import DataError
from pipeline.core.prepared import load_prepared
from pipeline.core.sections import DataConfig, SyntheticConfig
from pipeline.prepare.datasets import build_arrays, make_synthetic, prepare


def test_digits_shapes_and_balance():
    arrays, classes, _ = build_arrays(DataConfig(val_per_class=0, name="digits"))
    assert classes == [str(i) for i in range(10)]
    assert arrays["x_train"].shape[1:] == (1, 8, 8) and arrays["x_train"].dtype == np.uint8
    assert len(arrays["y_train"]) + len(arrays["y_test"]) == 1797
    assert len(arrays["y_test"]) == math.ceil(0.25 * 1797)  # sklearn rounds up
    total = np.bincount(np.concatenate([arrays["y_train"], arrays["y_test"]]))
    test = np.bincount(arrays["y_test"], minlength=10)
    assert np.abs(test - 0.25 * total).max() <= 1  # stratified: class shares kept
    assert len(arrays["y_val"]) == 0


def test_digits_split_is_seeded():
    a, _, _ = build_arrays(DataConfig(val_per_class=0, name="digits", split_seed=3))
    b, _, _ = build_arrays(DataConfig(val_per_class=0, name="digits", split_seed=3))
    c, _, _ = build_arrays(DataConfig(val_per_class=0, name="digits", split_seed=4))
    assert np.array_equal(a["x_test"], b["x_test"])
    assert not np.array_equal(a["y_test"], c["y_test"])


def test_val_and_train_per_class_are_stratified_and_disjoint():
    cfg = DataConfig(name="digits", val_per_class=5, train_per_class=20)
    arrays, _, _ = build_arrays(cfg)
    assert np.array_equal(np.bincount(arrays["y_val"]), np.full(10, 5))
    assert np.array_equal(np.bincount(arrays["y_train"]), np.full(10, 20))
    train_rows = {x.tobytes() for x in arrays["x_train"]}
    overlap = sum(x.tobytes() in train_rows for x in arrays["x_val"])
    assert overlap <= 1  # digits has a handful of duplicate images; no index overlap


def test_too_few_samples_names_the_key():
    with pytest.raises(DataError, match="data.train_per_class"):
        build_arrays(DataConfig(val_per_class=0, name="digits", train_per_class=10_000))


def test_synthetic_is_deterministic_and_grouped():
    cfg = SyntheticConfig(num_classes=6, group_size=2, noise=0.3, train_per_class=60)
    a, b = make_synthetic(cfg), make_synthetic(cfg)
    assert np.array_equal(a["x_train"], b["x_train"])
    assert a["x_train"].shape == (360, 1, 12, 12)
    # Class means: group partners are more similar (correlation) than unrelated classes.
    means = np.stack([a["x_train"][a["y_train"] == c].reshape(60, -1).mean(0) for c in range(6)])
    corr = np.corrcoef(means)
    for c in range(6):
        partner = c ^ 1
        others = [o for o in range(6) if o not in (c, partner)]
        assert corr[c, partner] > max(corr[c, o] for o in others)


def test_synthetic_group_size_must_divide():
    with pytest.raises(DataError, match="group_size"):
        make_synthetic(SyntheticConfig(num_classes=10, group_size=3))


def test_prepare_roundtrip_and_checksum(tmp_path):
    meta = prepare(DataConfig(name="digits", val_per_class=2), tmp_path / "prep")
    loaded = load_prepared(tmp_path / "prep")
    assert loaded.meta == meta
    assert meta["sizes"] == {"train": 1327, "val": 20, "test": 450}
    assert len(meta["mean"]) == 1 and 0 < meta["mean"][0] < 1
    scaled = loaded.x("train") / 255.0
    assert meta["mean"][0] == pytest.approx(scaled.mean())
    assert meta["std"][0] == pytest.approx(scaled.std())
    data_file = tmp_path / "prep" / "data.npz"
    blob = bytearray(data_file.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    data_file.write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"data\.npz: checksum mismatch"):
        load_prepared(tmp_path / "prep")


def test_missing_prepared_data(tmp_path):
    with pytest.raises(DataError, match="prepared data not found"):
        load_prepared(tmp_path / "nothing")


def _write_images(root, split, classes, n=2, size=10):
    rng = np.random.default_rng(0)
    for name in classes:
        folder = root / split / name
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


def test_imagefolder(tmp_path):
    _write_images(tmp_path, "train", ["cat", "dog"], n=3)
    _write_images(tmp_path, "test", ["cat", "dog"], n=2)
    cfg = DataConfig(val_per_class=0, name="imagefolder", root=str(tmp_path), image_size=6)
    arrays, classes, _ = build_arrays(cfg)
    assert classes == ["cat", "dog"]
    assert arrays["x_train"].shape == (6, 3, 6, 6)
    assert list(arrays["y_test"]) == [0, 0, 1, 1]
    gray, _, _ = build_arrays(DataConfig(val_per_class=0, name="imagefolder",
                                         root=str(tmp_path), channels=1))
    assert gray["x_train"].shape == (6, 1, 32, 32)


def test_imagefolder_without_test_split(tmp_path):
    _write_images(tmp_path, "train", ["a", "b"])
    with pytest.raises(DataError, match=r"test.*needs a 'test' folder"):
        build_arrays(DataConfig(val_per_class=0, name="imagefolder", root=str(tmp_path)))


def test_imagefolder_mismatched_classes(tmp_path):
    _write_images(tmp_path, "train", ["a", "b"])
    _write_images(tmp_path, "test", ["a", "c"])
    with pytest.raises(DataError, match=r"only in train: \['b'\], only in test: \['c'\]"):
        build_arrays(DataConfig(val_per_class=0, name="imagefolder", root=str(tmp_path)))


def test_cifar_offline_error_says_where_to_put_the_archive(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def no_network(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "urlretrieve", no_network, raising=False)
    monkeypatch.setattr(tv_utils, "_urlretrieve", no_network, raising=False)
    with pytest.raises(DataError) as info:
        build_arrays(DataConfig(val_per_class=0, name="cifar10", root=str(tmp_path)))
    assert f"place the official archive at {tmp_path / 'cifar-10-python.tar.gz'}" in str(info.value)


def test_meta_is_json(tmp_path):
    prepare(DataConfig(val_per_class=0, name="synthetic"), tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["groups"] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
