"""Shared fixtures: valid params, a pre-migrated MLflow store, tiny prepared data.

The folders say what a test needs: ``unit/`` nothing but the library (seconds);
``integration/`` a DVC project or MLflow store in ``tmp_path``; ``system/`` processes
(the warm server, the parallel runner, DVC's queue, torchrun, PostgreSQL, signals).
Everything outside ``unit/`` is marked ``slow`` here, by folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from .helpers import REPO, tiny_raw

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
SLOW_FOLDERS = ("integration", "system")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def base_raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


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
