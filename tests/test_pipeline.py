"""Integration: the repo's dvc.yaml in a temporary git repo, `dvc repro` on tiny params."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from .conftest import REPO, tiny_raw

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    return env


def sh(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def make_project(root: Path, raw: dict, migrated_db: Path) -> Path:
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy(migrated_db, root / "mlflow.db")
    sh(root, "git", "init", "-q")
    sh(root, sys.executable, "-m", "dvc", "init", "-q")
    shutil.copy(REPO / ".dvcignore", root / ".dvcignore")
    sh(root, sys.executable, "-m", "dvc", "config", "core.analytics", "false")
    return root


@pytest.fixture
def tiny_dag(base_raw) -> dict:
    raw = tiny_raw(base_raw)
    raw["baselines"]["methods"] = ["ce", "kd"]
    raw["kd_ablation"]["variants"] = ["shuffled_non_gt"]
    raw["introspective"]["variants"] = ["full"]
    raw["tune"].update(methods=["ce", "kd"], trials=[0, 1], seeds=[100])
    return raw


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return sh(root, sys.executable, "-m", "dvc", *args)


def test_dvc_repro_end_to_end(tmp_path, tiny_dag, migrated_db):
    root = make_project(tmp_path / "proj", tiny_dag, migrated_db)
    out = dvc(root, "repro")
    assert "Running stage 'teacher'" in out.stdout
    assert "Running stage 'kd_ablation@shuffled_non_gt-0'" in out.stdout
    assert (root / "data/prepared/data.npz").is_file()
    assert (root / "models/teacher/model.pt").is_file()
    for folder in ("teacher", "baselines/ce-0", "baselines/kd-0", "kd_ablation/shuffled_non_gt-0",
                   "introspective/full-0"):
        metrics = json.loads((root / "results" / folder / "metrics.json").read_text())
        assert {"test_acc", "test_nll", "test_ece", "test_top5"} <= set(metrics)
        assert (root / "results" / folder / "history.csv").read_text().startswith("epoch,")

    # every stage logged one finished run into the repo's own (absolute) SQLite store
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
            if r.data.tags.get("stage") not in ("aggregate", "tune", "tuned")]
    assert sorted(r.info.run_name for r in runs) == [
        "baselines@ce-0", "baselines@kd-0", "introspective@full-0",
        "kd_ablation@shuffled_non_gt-0", "teacher"]
    assert all(r.info.status == "FINISHED" for r in runs)
    teacher_run = json.loads((root / "results/teacher/mlflow_run.json").read_text())["run_id"]
    assert {r.info.run_id for r in runs if r.info.run_name == "teacher"} == {teacher_run}

    # up to date: nothing to do, and `dvc metrics show` sees every metrics file
    assert json.loads(dvc(root, "status", "--json").stdout) == {}
    shown = json.loads(dvc(root, "metrics", "show", "--json").stdout)
    assert len(json.dumps(shown).split("metrics.json")) - 1 == 7

    # IL's own figures: target statistics per epoch, similarity matrix and explanations
    il = json.loads((root / "results/introspective/full-0/metrics.json").read_text())
    assert 0 < il["target_gt_prob"] <= 1 and -1 <= il["similarity_rank_corr_teacher"] <= 1
    il_run = [r for r in runs if r.info.run_name == "introspective@full-0"][0]
    names = {a.path for a in client.list_artifacts(il_run.info.run_id)}
    assert {"similarity.csv", "similarity.png", "explanations.png"} <= names
    assert len(client.get_metric_history(il_run.info.run_id, "target_entropy")) == 2

    # tuning: two configurations per method on the validation split, the best one written to
    # params_tuned.yaml, and the tuned runs train with exactly that configuration
    tuned = yaml.safe_load((root / "params_tuned.yaml").read_text())
    assert set(tuned) == {"ce", "kd"}
    trials = [json.loads((root / f"results/tune/{m}/trial-{t}.json").read_text())
              for m in ("ce", "kd") for t in (0, 1)]
    best_kd = max((t for t in trials if t["method"] == "kd"),
                  key=lambda t: (t["val_acc"], -t["val_nll"]))
    assert tuned["kd"]["overrides"] == best_kd["overrides"]
    kd_run = json.loads((root / "results/tuned/kd-0/mlflow_run.json").read_text())["run_id"]
    logged = client.get_run(kd_run).data.params
    assert float(logged["train.lr"]) == best_kd["overrides"]["train"]["lr"]
    assert float(logged["kd.alpha"]) == best_kd["overrides"]["kd"]["alpha"]

    # aggregate: tables and figures exist; DVC metrics and MLflow tell the same story
    t1 = (root / "results/tables/T1_kd_components.md").read_text()
    assert "| CE | 1 |" in t1 and "KD shuffled non-GT" in t1
    t3 = (root / "results/tables/T3_peers_teachers.md").read_text()
    assert "| KD from a teacher (tuned) | 1 |" in t3 and "Δ top-1 vs CE (tuned)" in t3
    assert (root / "results/figures/T2_regularizers_accuracy.png").stat().st_size > 5000
    summary = [r for r in client.search_runs([e.experiment_id for e in
                                              client.search_experiments()])
               if r.data.tags.get("stage") == "aggregate"]
    assert len(summary) == 1
    assert "tables/T1_kd_components.md" in {
        a.path for a in client.list_artifacts(summary[0].info.run_id, "tables")}

    # the notebook runs top to bottom on these outputs and rebuilds the same T1 from MLflow
    import nbclient
    import nbformat

    shutil.copytree(REPO / "notebooks", root / "notebooks")
    notebook = nbformat.read(root / "notebooks/results.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    printed = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert t1.strip() in printed

    # editing a teacher key invalidates exactly the teacher stage
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["teacher"]["train"]["lr"] = 0.02
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert set(json.loads(dvc(root, "status", "--json").stdout)) == {"teacher"}
    # ... and a KD key exactly the stages that read it
    raw["teacher"]["train"]["lr"] = tiny_dag["teacher"]["train"]["lr"]
    raw["kd"]["T"] = 2.0
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert set(json.loads(dvc(root, "status", "--json").stdout)) == {
        "baselines@ce-0", "baselines@kd-0", "kd_ablation@shuffled_non_gt-0",
        "tune@ce", "tune@kd", "tuned@ce-0", "tuned@kd-0"}
    # ... and a tuning-grid key the tuning stages only: the tuned runs wait for
    # params_tuned.yaml, which changes only if tune_select picks something else
    raw["kd"]["T"] = tiny_dag["kd"]["T"]
    raw["tune"]["shared"]["lr"] = [0.01, 0.05, 0.2]
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert set(json.loads(dvc(root, "status", "--json").stdout)) == {
        "tune@ce", "tune@kd", "tune_select"}
