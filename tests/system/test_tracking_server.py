"""Shared tracking: a real PostgreSQL + `mlflow server`, and a stage logging to it over HTTP.

The setup README.md documents for several machines: PostgreSQL as the backend
store, the server proxying a file artifact root, stages pointed at it with
``MLFLOW_TRACKING_URI=http://host:port``. Skipped where PostgreSQL is not
installed, unless ``ILKD_REQUIRE_POSTGRES=1`` (set by ``.ci/run``, which installs
it from Debian's packages) turns the skip into a failure.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from ..helpers import make_project, stage, tiny_raw


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; CI runs as root, so drop to the `postgres` user."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("ILKD_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL (initdb, pg_ctl) not found but ILKD_REQUIRE_POSTGRES=1")
        pytest.skip("PostgreSQL is not installed (`.ci/run` installs it)")
    # a folder the `postgres` user can reach (pytest's tmp dirs are private to root)
    folder = Path(tempfile.mkdtemp(prefix="ilkd-pg-", dir="/tmp"))
    folder.chmod(0o755)
    data = folder / "data"
    data.mkdir(mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
    port = _free_port()
    subprocess.run(_as_postgres_user([initdb, "-D", str(data), "-U", "ilkd", "--auth=trust",
                                      "-E", "UTF8"]), check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-l", str(folder / "log"),
                                      "-o", options, "-w", "start"]),
                   check=True, capture_output=True)
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="ilkd", dbname="postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE mlflow")
        yield f"postgresql://ilkd@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(_as_postgres_user([pg_ctl, "-D", str(data), "-m", "fast", "stop"]),
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    artifacts = tmp_path_factory.mktemp("server-artifacts")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = open(artifacts.parent / "server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres,
         "--artifacts-destination", artifacts.as_uri(), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError("mlflow server did not start:\n"
                                     + (artifacts.parent / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url, artifacts
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_stage_logs_to_a_postgres_backed_tracking_server(tmp_path, base_raw, migrated_db,
                                                         mlflow_server, postgres):
    url, artifact_root = mlflow_server
    raw = tiny_raw(base_raw)
    root = make_project(tmp_path / "proj", raw, migrated_db)
    proc = stage(root, "shared_teacher", MLFLOW_TRACKING_URI=url)
    assert proc.returncode == 0, proc.stderr[-3000:]

    local = json.loads((root / "results/teacher/shared/seed-0/metrics.json").read_text())
    run_id = json.loads((root / "results/teacher/shared/seed-0/mlflow_run.json").read_text())[
        "run_id"]
    client = MlflowClient(tracking_uri=url)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["stage"] == "teacher"
    history = client.get_metric_history(run_id, "test_acc")
    assert sorted(m.step for m in history) == [1, 2]
    assert run.data.metrics["test_acc"] == pytest.approx(local["test_acc"])

    # the artifact came back through the server and lies under its artifact root
    fetched = client.download_artifacts(run_id, "metrics.json", str(tmp_path / "fetched"))
    assert json.loads(Path(fetched).read_text()) == local
    assert list(artifact_root.rglob("metrics.json"))
    # nothing went to the project's local SQLite store or mlartifacts folder
    assert not (root / "mlartifacts").exists()
    assert not MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_runs(
        [e.experiment_id for e in
         MlflowClient(f"sqlite:///{root / 'mlflow.db'}").search_experiments()])

    # the runs table's columns and tree work through the server too: source, dataset,
    # logged (and registered) model, one parent over two seeds
    for seed in ("0", "1"):
        done = stage(root, "baselines", "--method", "ce", "--seed", seed, MLFLOW_TRACKING_URI=url)
        assert done.returncode == 0, done.stderr[-3000:]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert run.data.tags["mlflow.source.name"] == "python -m stages.train shared_teacher"
    (dataset,) = run.inputs.dataset_inputs
    meta = json.loads((root / "data/prepared/meta.json").read_text())
    assert dataset.dataset.digest == meta["sha256"][:36]
    (output,) = run.outputs.model_outputs
    import mlflow.pytorch

    mlflow.set_tracking_uri(url)
    model = mlflow.pytorch.load_model(f"models:/{output.model_id}")
    assert isinstance(model, torch.nn.Module)
    (version,) = client.search_model_versions("name = 'ilkd-quick-teacher'")
    assert version.run_id == run_id
    parents = client.search_runs([run.info.experiment_id],
                                 filter_string="tags.ilkd_role = 'parent'")
    assert [p.data.tags["ilkd_group"] for p in parents] == ["baselines@ce"]
    children = client.search_runs([run.info.experiment_id], filter_string=(
        f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'"))
    assert sorted(c.info.run_name for c in children) == ["baselines@ce-0", "baselines@ce-1"]
    accs = [json.loads((root / f"results/baselines/ce-{s}/metrics.json").read_text())["test_acc"]
            for s in (0, 1)]
    assert parents[0].data.metrics["test_acc_mean"] == pytest.approx(sum(accs) / 2)

    # and the run is a row in PostgreSQL itself
    import psycopg

    with psycopg.connect(postgres) as conn:
        row = conn.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,)).fetchone()
    assert row == ("FINISHED",)
