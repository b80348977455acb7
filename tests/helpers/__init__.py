"""What tests share: the repo's path, params and data builders, DVC projects and
stage processes in ``tmp_path``. Fixtures live in ``tests/conftest.py``."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline.core.config import parse_params
from pipeline.core.prepared import Prepared
from pipeline.core.sections import SyntheticConfig, TrainConfig
from pipeline.prepare.datasets import make_synthetic, normalisation_stats, prepare
from pipeline.train.engine import DeviceData

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- params and data


def tiny_raw(base: dict, **sections) -> dict:
    """The repo's params shrunk to seconds: tiny models, 2 epochs, progress off."""
    raw = copy.deepcopy(base)
    raw["seeds"] = [0]
    raw["runtime"]["progress"] = False
    raw["data"]["train_per_class"] = 20
    for role in ("teacher", "student"):
        raw[role]["model"] = {"arch": "small_cnn", "width": 0.25}
        raw[role]["train"]["epochs"] = 2
    for key, value in sections.items():
        raw[key] = value
    return raw


def small_dag(base_raw: dict) -> dict:
    raw = tiny_raw(base_raw)
    raw["baselines"]["methods"] = ["ce", "label_smoothing"]
    raw["kd_ablation"]["variants"] = ["full"]
    raw["introspective_ablation"]["variants"] = ["full"]
    raw["tune"].update(methods=["ce"], teacher_methods=[], trials=[0], seeds=[100])
    return raw

def synthetic_prepared(num_classes: int = 4, per_class: int = 40, seed: int = 0) -> Prepared:
    cfg = SyntheticConfig(num_classes=num_classes, group_size=2, image_size=8,
                          train_per_class=per_class, test_per_class=per_class // 2,
                          noise=0.5, seed=seed)
    arrays = make_synthetic(cfg)
    arrays["x_val"], arrays["y_val"] = arrays["x_train"][:0], arrays["y_train"][:0]
    mean, std = normalisation_stats(arrays["x_train"])
    meta = {"dataset": "synthetic", "classes": [str(c) for c in range(num_classes)],
            "shape": list(arrays["x_train"].shape[1:]), "mean": mean, "std": std,
            "sha256": "test"}
    return Prepared(arrays, meta)


def device_data(device: str = "cpu", **kwargs) -> DeviceData:
    import torch

    return DeviceData(synthetic_prepared(**kwargs), torch.device(device))


def train_cfg(**overrides) -> TrainConfig:
    base = dict(epochs=3, batch_size=32, lr=0.05, weight_decay=5e-4,
                schedule={"name": "cosine"}, augment={"crop_padding": 1, "flip": True})
    return TrainConfig.model_validate({**base, **overrides})


# ---------------------------------------------------------------- DVC projects in tmp_path


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without MLflow/DVC variables, venv on PATH."""
    import os
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.update(extra)
    return env


def sh(cwd, *cmd: str, check: bool = True, timeout: float = 900, **env: str):
    import subprocess

    proc = subprocess.run(cmd, cwd=cwd, env=clean_env(**env), capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def dvc(root, *args: str, check: bool = True, timeout: float = 900):
    import sys

    return sh(root, sys.executable, "-m", "dvc", *args, check=check, timeout=timeout)


def make_dvc_project(root, raw: dict, migrated_db):
    """The repo's code and dvc.yaml in a fresh git + DVC repo under ``root``, with ``raw``
    as params.yaml and a copy of a pre-migrated MLflow store."""
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    # the DAG's parts as a fresh clone has them: no lock files, no code manifests
    shutil.copytree(REPO / "dag", root / "dag",
                    ignore=shutil.ignore_patterns("dvc.lock", "*.json"))
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy(migrated_db, root / "mlflow.db")
    sh(root, "git", "init", "-q")
    sh(root, sys.executable, "-m", "dvc", "init", "-q")
    shutil.copy(REPO / ".dvcignore", root / ".dvcignore")
    sh(root, sys.executable, "-m", "dvc", "config", "core.analytics", "false")
    return root


def seed_runs(client) -> list:
    """Every training run in the store, without the per-group parent runs."""
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return [r for r in runs if r.data.tags.get("ilkd_role") != "parent"]


# ---------------------------------------------------------------- stage processes


def make_project(root: Path, raw: dict, db: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    prepare(parse_params(raw).data, root / "data/prepared")
    shutil.copy(db, root / "mlflow.db")
    return root


def env_for(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", MLFLOW_DISABLE_TELEMETRY="true",
               MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
    env.update(extra)
    return env


def stage(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.train", *args], cwd=root,
                          env=env_for(root, **env), capture_output=True, text=True, timeout=600)
