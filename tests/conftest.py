"""Shared fixtures: valid params, a pre-migrated MLflow store, tiny prepared data."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def base_raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


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


@pytest.fixture
def tiny(base_raw) -> dict:
    return tiny_raw(base_raw)


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """Creating an MLflow SQLite store runs migrations (seconds): do it once."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(tmp_path, migrated_db, monkeypatch) -> str:
    db = tmp_path / "mlflow.db"
    shutil.copy(migrated_db, db)
    uri = f"sqlite:///{db}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
