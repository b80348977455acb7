"""``data.split_seed: per_seed`` in a DVC project: a teacher per seed, paired with its
students, and a planned look that adds seeds retrains no existing run."""

from __future__ import annotations

import json

import numpy as np
import torch
import yaml
from mlflow.tracking import MlflowClient

from pipeline.core.prepared import load_prepared
from pipeline.orchestrate.plan import label

from ..helpers import dvc, make_dvc_project, seed_runs, sh, tiny_raw


def test_per_seed_dag_pairs_teachers_and_adds_seeds_incrementally(tmp_path, base_raw,
                                                                   migrated_db):
    raw = tiny_raw(base_raw, seeds=[0, 1])
    raw["data"].update(split_seed="per_seed", train_per_class=20)
    raw["baselines"]["methods"] = ["ce"]
    raw["kd_ablation"]["variants"] = ["full"]
    raw["introspective_ablation"]["variants"] = ["full"]
    raw["tune"].update(enabled=False, methods=["ce"], teacher_methods=[])
    root = make_dvc_project(tmp_path / "proj", raw, migrated_db)
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\ncheckpoints/\n")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny")
    dvc(root, "repro")

    pool = load_prepared(root / "data/prepared")
    for seed in (0, 1):
        saved = torch.load(root / f"models/teacher/seed-{seed}/model.pt", weights_only=False)
        assert saved["meta"]["subset_seed"] == seed
    accs = [json.loads((root / f"results/teacher/seed-{s}/metrics.json").read_text())[
        "test_acc"] for s in (0, 1)]
    table = (root / "results/tables/all_tables.md").read_text()
    assert f"{sum(accs) / 2:.2f}% (mean of 2 per-seed teachers)" in table.splitlines()[0]
    assert not list((root / "models/teacher/shared").rglob("model.pt"))  # nothing shared
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    runs = {r.info.run_name: r for r in seed_runs(client)}
    for seed in (0, 1):
        teacher_run = runs[f"teacher@seed-{seed}"].info.run_id
        assert runs[f"kd_ablation@full-{seed}"].data.tags["teacher_run_id"] == teacher_run
    subsets = {s: pool.for_seed(s) for s in (0, 1)}
    assert not np.array_equal(subsets[0].x("train"), subsets[1].x("train"))

    # a planned look: a third seed trains its teacher and its students, nothing else
    params = root / "params.yaml"
    raw["seeds"] = [0, 1, 2]
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = dvc(root, "repro").stdout
    ran = {label(line.split("'")[1]) for line in out.splitlines()
           if line.startswith("Running stage")}
    assert ran == {"teacher@2", "baselines@ce-2", "kd_ablation@full-2", "introspective@full-2",
                   "tuned@ce-2", "aggregate"}
    names = [r.info.run_name for r in seed_runs(client) if r.data.tags.get("stage") == "teacher"]
    assert sorted(names) == [f"teacher@seed-{s}" for s in (0, 1, 2)]  # none retrained
    assert json.loads(dvc(root, "status", "--json").stdout) == {}
