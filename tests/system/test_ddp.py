"""One run on several processes with torchrun (gloo on CPU) matches a single process.

The global batch (``train.batch_size``) is split across ranks, gradients are
averaged, so the optimisation is that of one process up to BatchNorm statistics,
which each rank computes on its own shard (as in DDP without SyncBatchNorm), and
float summation order. Stated tolerance after 3 epochs on digits (both runs reach
about 95%): top-1 within 2 points, NLL within 0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from ..helpers import env_for, make_project, seed_runs, stage, tiny_raw


def test_two_process_gloo_run_matches_single_process(tmp_path, base_raw, migrated_db):
    raw = tiny_raw(base_raw)
    raw["data"]["train_per_class"] = None  # all 1247 training digits: a converging run
    raw["student"]["model"]["width"] = 0.5
    raw["student"]["train"].update(epochs=3, batch_size=64)
    single = make_project(tmp_path / "single", raw, migrated_db)
    # the gloo path on the CPU wherever it runs: on a CUDA machine torchrun would pick NCCL,
    # which needs a GPU per rank (a 1-GPU machine would fail, not test anything)
    cpu = {"CUDA_VISIBLE_DEVICES": ""}
    assert stage(single, "baselines", "--method", "ce", "--seed", "0", **cpu).returncode == 0

    multi = make_project(tmp_path / "multi", raw, migrated_db)
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "stages.train",
         "baselines", "--method", "ce", "--seed", "0"],
        cwd=multi, env=env_for(multi, OMP_NUM_THREADS="1", **cpu), capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "world size 2" in proc.stdout

    a = json.loads((single / "results/baselines/ce-0/metrics.json").read_text())
    b = json.loads((multi / "results/baselines/ce-0/metrics.json").read_text())
    print(f"1 process: top-1 {a['test_acc']:.2f}, NLL {a['test_nll']:.4f}; "
          f"2 ranks: top-1 {b['test_acc']:.2f}, NLL {b['test_nll']:.4f}")
    assert a["test_acc"] > 85 and b["test_acc"] > 85  # both converged
    assert abs(a["test_acc"] - b["test_acc"]) <= 2.0
    assert abs(a["test_nll"] - b["test_nll"]) <= 0.1

    # rank 0 alone logs and checkpoints: one MLflow run with every epoch once
    client = MlflowClient(f"sqlite:///{multi / 'mlflow.db'}")
    runs = seed_runs(client)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "test_acc")]
    assert sorted(steps) == [1, 2, 3]
    assert runs[0].data.tags["world_size"] == "2"
