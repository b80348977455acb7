"""Dataset sources, prepared once into one checksummed array file + ``meta.json``.

All images are stored as uint8 ``(N, C, H, W)`` so every later stage loads the
same bytes whatever the source (bundled digits, procedural synthetic images,
torchvision CIFAR, or a user's image folder). Normalisation statistics come
from the training split only.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from pipeline.core.errors import DataError
from pipeline.core.io import atomic_write_bytes, atomic_write_json
from pipeline.core.prepared import DATA_FILE, META_FILE, SPLITS, carve
from pipeline.core.sections import DataConfig, SyntheticConfig

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


# ---------------------------------------------------------------- sources


def load_digits_raw() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images[:, None], bunch.target.astype(np.int64), [str(c) for c in bunch.target_names]


def _smooth_pattern(rng: np.random.Generator, size: int, cells: int = 4) -> np.ndarray:
    """A random low-frequency pattern: coarse Gaussian noise, bilinearly upsampled."""
    coarse = rng.standard_normal((cells + 1, cells + 1))
    grid = np.linspace(0, cells, size)
    i0 = np.minimum(np.floor(grid).astype(int), cells - 1)
    f = grid - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def synthetic_groups(cfg: SyntheticConfig) -> list[int]:
    """Group id of every class: classes ``g*group_size ... (g+1)*group_size-1`` share a group."""
    return [c // cfg.group_size for c in range(cfg.num_classes)]


def make_synthetic(cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    """Images = (1-s) * group pattern + s * class pattern + noise.

    Classes in one group share most of their pattern, so a good model's
    class-similarity matrix should rank a class's group partners above the rest.
    """
    if cfg.num_classes % cfg.group_size:
        raise DataError(
            f"data.synthetic.group_size: {cfg.group_size} does not divide "
            f"num_classes={cfg.num_classes}"
        )
    rng = np.random.default_rng(cfg.seed)
    groups = synthetic_groups(cfg)
    size, s = cfg.image_size, cfg.class_strength
    n_patterns = max(groups) + 1 + cfg.num_classes
    if n_patterns > size * size:
        raise DataError(f"data.synthetic.image_size: {size} is too small for {n_patterns} patterns")
    # Orthonormalise the smooth patterns so the designed similarity is exact:
    # partners share the group pattern, unrelated classes share nothing.
    smooth = np.stack([_smooth_pattern(rng, size).ravel() for _ in range(n_patterns)], axis=1)
    basis, _ = np.linalg.qr(smooth - smooth.mean(axis=0))
    patterns = (basis * size).T.reshape(n_patterns, size, size)  # unit pixel variance
    group_pat, class_pat = patterns[: max(groups) + 1], patterns[max(groups) + 1:]
    out: dict[str, np.ndarray] = {}
    for split, per_class in (("train", cfg.train_per_class), ("test", cfg.test_per_class)):
        xs, ys = [], []
        for c in range(cfg.num_classes):
            base = (1 - s) * group_pat[groups[c]] + s * class_pat[c]
            amp = rng.uniform(0.8, 1.2, size=(per_class, 1, 1))
            noise = cfg.noise * rng.standard_normal((per_class, size, size))
            xs.append(amp * base[None] + noise)
            ys.append(np.full(per_class, c, dtype=np.int64))
        x = np.concatenate(xs)[:, None]
        out[f"x_{split}"] = np.clip(128 + 48 * x, 0, 255).astype(np.uint8)
        out[f"y_{split}"] = np.concatenate(ys)
    return out


def load_cifar(name: str, root: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    archive = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}[name]
    out: dict[str, np.ndarray] = {}
    try:
        for split, train in (("train", True), ("test", False)):
            ds = cls(str(root), train=train, download=True)
            out[f"x_{split}"] = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))
            out[f"y_{split}"] = np.asarray(ds.targets, dtype=np.int64)
    except Exception as exc:  # torchvision raises URLError, RuntimeError (checksum), ...
        raise DataError(
            f"{root / archive}: could not download or verify {name} ({exc}). "
            f"Without network access, place the official archive at {root / archive} and rerun."
        ) from None
    return out, list(ds.classes)


def load_imagefolder(cfg: DataConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    from PIL import Image

    root = Path(cfg.root)
    size = cfg.image_size or 32
    classes_per_split: dict[str, list[str]] = {}
    for split in ("train", "test"):
        folder = root / split
        if not folder.is_dir():
            raise DataError(f"{folder}: imagefolder dataset needs a '{split}' folder of class folders")
        classes_per_split[split] = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if not classes_per_split[split]:
            raise DataError(f"{folder}: no class folders found")
    if classes_per_split["train"] != classes_per_split["test"]:
        only_train = set(classes_per_split["train"]) - set(classes_per_split["test"])
        only_test = set(classes_per_split["test"]) - set(classes_per_split["train"])
        raise DataError(
            f"{root}: class folders differ between train and test "
            f"(only in train: {sorted(only_train)}, only in test: {sorted(only_test)})"
        )
    classes = classes_per_split["train"]
    mode = "L" if cfg.channels == 1 else "RGB"
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        xs, ys = [], []
        for label, name in enumerate(classes):
            files = sorted(p for p in (root / split / name).iterdir()
                           if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(f"{root / split / name}: no images (png/jpg/bmp)")
            for path in files:
                try:
                    with Image.open(path) as img:
                        arr = np.asarray(img.convert(mode).resize((size, size)), dtype=np.uint8)
                except OSError as exc:
                    raise DataError(f"{path}: cannot read image ({exc})") from None
                xs.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
                ys.append(label)
        out[f"x_{split}"] = np.stack(xs)
        out[f"y_{split}"] = np.asarray(ys, dtype=np.int64)
    return out, classes


# ---------------------------------------------------------------- splitting


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    return np.sort(train), np.sort(test)


def build_arrays(cfg: DataConfig) -> tuple[dict[str, np.ndarray], list[str], dict]:
    """Load the configured source and apply the val / train_per_class carving."""
    extra: dict = {}
    if cfg.name == "digits":
        x, y, classes = load_digits_raw()
        # the test split never varies with the seed (per_seed draws train/val only)
        tr, te = stratified_split(y, cfg.test_fraction, 0 if cfg.per_seed else cfg.split_seed)
        arrays = {"x_train": x[tr], "y_train": y[tr], "x_test": x[te], "y_test": y[te]}
    elif cfg.name == "synthetic":
        arrays = make_synthetic(cfg.synthetic)
        classes = [f"class{c}" for c in range(cfg.synthetic.num_classes)]
        extra["groups"] = synthetic_groups(cfg.synthetic)
    elif cfg.name in ("cifar10", "cifar100"):
        arrays, classes = load_cifar(cfg.name, Path(cfg.root))
    else:
        arrays, classes = load_imagefolder(cfg)

    if not cfg.per_seed:  # per_seed: the pool stays whole; each run carves its own (Prepared.for_seed)
        train_idx, val_idx = carve(arrays["y_train"], cfg.val_per_class, cfg.train_per_class,
                                   np.random.default_rng(cfg.split_seed))
        x, y = arrays["x_train"], arrays["y_train"]
        arrays["x_val"], arrays["y_val"] = x[val_idx], y[val_idx]
        arrays["x_train"], arrays["y_train"] = x[train_idx], y[train_idx]
    else:  # the draw of seed 0, to fail here (not in a training stage) on a pool too small
        train_idx, val_idx = carve(arrays["y_train"], cfg.val_per_class, cfg.train_per_class,
                                   np.random.default_rng(0))
        extra["per_seed_sizes"] = {"train": len(train_idx), "val": len(val_idx)}
        shape = arrays["x_train"].shape[1:]
        arrays["x_val"] = np.empty((0, *shape), dtype=arrays["x_train"].dtype)
        arrays["y_val"] = np.empty(0, dtype=arrays["y_train"].dtype)
    return arrays, classes, extra


def normalisation_stats(x_train: np.ndarray) -> tuple[list[float], list[float]]:
    scaled = x_train.astype(np.float64) / 255.0
    mean = scaled.mean(axis=(0, 2, 3))
    std = scaled.std(axis=(0, 2, 3))
    return mean.tolist(), np.maximum(std, 1e-3).tolist()


def prepare(cfg: DataConfig, out_dir: str | Path) -> dict:
    """Build the dataset and write ``data.npz`` + ``meta.json`` atomically; return meta."""
    arrays, classes, extra = build_arrays(cfg)
    mean, std = normalisation_stats(arrays["x_train"])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    blob = buffer.getvalue()
    meta = {
        "dataset": cfg.name,
        "classes": classes,
        "shape": list(arrays["x_train"].shape[1:]),
        "sizes": {s: int(len(arrays[f"y_{s}"])) for s in SPLITS},
        "mean": mean,
        "std": std,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "config": cfg.model_dump(mode="json"),
        **extra,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / DATA_FILE, blob)
    atomic_write_json(out / META_FILE, meta)
    return meta
