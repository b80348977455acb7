"""MLflow bookkeeping shared by concurrent stage processes (seeds of one method)."""

from __future__ import annotations

import multiprocessing as mp

from mlflow.tracking import MlflowClient

from pipeline.core.parents import _inherit_source


def _adopt(uri: str, child: str, parent: str, barrier, errors) -> None:
    client = MlflowClient(tracking_uri=uri)  # a process of its own, as each stage is
    barrier.wait()
    try:
        _inherit_source(client, child, parent)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        errors.put(f"{type(exc).__name__}: {exc}"[:300])


def test_seeds_finishing_together_give_their_parent_its_source_once(mlflow_uri):
    """Every seed that finds its parent without a source copies its own tags there; when
    they do it at the same moment, none may fail (a UNIQUE constraint error once did)."""
    client = MlflowClient(tracking_uri=mlflow_uri)
    experiment = client.create_experiment("race")
    parent = client.create_run(experiment, run_name="baselines@ce").info.run_id
    source = {"mlflow.source.name": "python -m stages.train baselines --method ce",
              "mlflow.source.git.commit": "abc", "mlflow.user": "me"}
    children = [client.create_run(experiment, tags={**source, "seed": str(i)}).info.run_id
                for i in range(6)]
    ctx = mp.get_context("fork")
    barrier, errors = ctx.Barrier(len(children)), ctx.Queue()
    procs = [ctx.Process(target=_adopt, args=(mlflow_uri, c, parent, barrier, errors))
             for c in children]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == []
    assert [p.exitcode for p in procs] == [0] * len(procs)
    tags = client.get_run(parent).data.tags
    assert {k: tags[k] for k in source} == source


def test_cuda_runs_record_system_metrics_and_cpu_runs_do_not(mlflow_uri):
    """On CUDA devices a run samples CPU, memory and GPU utilisation into MLflow
    (system/... metrics; GPU ones where nvidia-ml-py finds a GPU), so the UI shows whether
    the GPU was busy. Checked here with the switch a CUDA run turns on."""
    import time

    from pipeline.core.tracking import Tracker

    for on in (False, True):
        with Tracker("system", f"on-{on}", {"stage": "x"}, {}) as tracker:
            with tracker.system_metrics(on, interval=0.2):
                time.sleep(1.2)
        metrics = MlflowClient(tracking_uri=mlflow_uri).get_run(tracker.run_id).data.metrics
        system = [k for k in metrics if k.startswith("system/")]
        assert bool(system) == on, system
        if on:
            assert "system/cpu_utilization_percentage" in system


def test_a_model_upload_cut_after_its_link_completes_on_the_rerun(mlflow_uri):
    """Killed inside log_model after the model was linked to the run (but before it was
    READY), the resumed stage uploads it again: the second link would break the store's
    unique key, so the upload completes without it and the model ends READY."""
    import torch
    from mlflow.entities import LoggedModelOutput

    from pipeline.core.tracking import Tracker

    with Tracker("resume", "baselines@ce-0", {"stage": "baselines"}, {}) as tracker:
        (model_id,) = tracker.open_models(["student"], "baselines@ce-0").values()
        tracker.client.log_outputs(tracker.run_id, [LoggedModelOutput(model_id, step=0)])
        model = torch.nn.Linear(3, 2)
        assert tracker.log_model(model, "student", torch.zeros(1, 3).numpy()) == model_id
    client = MlflowClient(tracking_uri=mlflow_uri)
    assert client.get_logged_model(model_id).status == "READY"
    outputs = client.get_run(tracker.run_id).outputs.model_outputs
    assert [o.model_id for o in outputs] == [model_id]


def test_a_ctrl_c_while_the_store_creates_the_run_ends_it_killed(mlflow_uri, monkeypatch):
    """A SIGINT that arrives while MLflow writes the new RUNNING run (here: right after the
    store's insert, inside ``create_run``) acts once the run's id is known, so the run ends
    KILLED instead of staying RUNNING with nobody to finish it."""
    import os
    import signal

    import pytest
    from mlflow.tracking import MlflowClient as Client

    from pipeline.core.tracking import Tracker

    create = Client.create_run

    def create_then_interrupted(self, *args, **kwargs):
        run = create(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # the run is in the store, not yet returned
        return run

    monkeypatch.setattr(Client, "create_run", create_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        Tracker("interrupted", "baselines@ce-0", {"stage": "baselines"}, {"lr": 0.1})
    monkeypatch.setattr(Client, "create_run", create)
    client = MlflowClient(tracking_uri=mlflow_uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "interrupted"]
    runs = client.search_runs([experiment.experiment_id])
    assert [(r.info.status, r.data.tags.get("failure_reason")) for r in runs] == \
        [("KILLED", "interrupted")]
