"""MLflow parent runs: one per configuration of a stage (its method or variant and what its
seeds share), holding mean and std over its finished seed runs."""

from __future__ import annotations

import time
from typing import Any

# the tags that tie a seed's run to its parent: its group (stage and method or variant), the
# fingerprint of what its seeds share, and its role (filter the UI with tags.ilkd_role = 'seed')
GROUP_TAG, CONFIG_TAG, ROLE_TAG = "ilkd_group", "ilkd_config", "ilkd_role"
PARENT_ROLE, CHILD_ROLE = "parent", "seed"


def child_tags(group: str, config: str) -> dict[str, str]:
    """The tags of a seed's run that :func:`update_parent` finds its siblings by."""
    return {GROUP_TAG: group, CONFIG_TAG: config, ROLE_TAG: CHILD_ROLE}


def update_parent(client: Any, experiment_id: str, child_id: str, group: str,
                  name: str, metrics: dict[str, float], config: str = "",
                  description: str = "") -> str:
    """Make ``child_id`` a child of its configuration's one parent run, holding mean and
    std over that configuration's finished children of every final metric; return the
    parent's id.

    A parent is keyed by the group (stage, method/variant) *and* ``config``, the fingerprint
    of what its seeds share (params read, data, teacher): an ablation gets a parent of its
    own, and a summary never mixes two configurations. Idempotent and safe with concurrent
    seeds: each seed creates a parent only if it finds none, then every seed adopts the
    oldest parent and deletes any younger duplicate, so racing seeds converge on one.
    Metrics are logged at step = number of children, so the most complete summary is the
    one MLflow shows.
    """
    import numpy as np
    from mlflow.entities import Metric

    same = f"tags.{GROUP_TAG} = '{group}' and tags.{CONFIG_TAG} = '{config}'"

    def parents() -> list:
        found = client.search_runs([experiment_id], filter_string=(
            f"{same} and tags.{ROLE_TAG} = '{PARENT_ROLE}'"))
        return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))

    if not parents():
        client.create_run(experiment_id, run_name=name, tags={
            GROUP_TAG: group, CONFIG_TAG: config, ROLE_TAG: PARENT_ROLE,
            "mlflow.note.content": description or f"{name}: mean and std over seeds"})
    parent, *duplicates = parents()
    for extra in duplicates:
        try:
            client.delete_run(extra.info.run_id)
        except Exception:  # another seed deleted it first
            pass
    client.set_tag(child_id, "mlflow.parentRunId", parent.info.run_id)
    if "mlflow.source.name" not in parent.data.tags:
        _inherit_source(client, child_id, parent.info.run_id)
    children = client.search_runs([experiment_id], filter_string=(
        f"{same} and tags.{ROLE_TAG} = '{CHILD_ROLE}' and attributes.status = 'FINISHED'"))
    latest: dict[str, Any] = {}
    for run in sorted(children, key=lambda r: r.info.start_time):
        latest[run.data.tags.get("seed", run.info.run_id)] = run  # a rerun replaces its seed
    values: dict[str, list[float]] = {}
    for run in latest.values():
        for key in metrics:
            if key in run.data.metrics:
                values.setdefault(key, []).append(run.data.metrics[key])
    stamp, step = int(time.time() * 1000), len(latest)
    summary = []
    for key, vals in values.items():
        summary.append(Metric(f"{key}_mean", float(np.mean(vals)), stamp, step))
        summary.append(Metric(f"{key}_std", float(np.std(vals, ddof=1)) if len(vals) > 1
                              else 0.0, stamp, step))
    summary.append(Metric("seeds", float(step), stamp, step))
    for i in range(0, len(summary), 500):
        client.log_batch(parent.info.run_id, metrics=summary[i:i + 500])
    client.set_terminated(parent.info.run_id, "FINISHED")
    return parent.info.run_id


def _inherit_source(client: Any, child_id: str, parent_id: str) -> None:
    """The parent shows its seeds' Source and Dataset in the runs table (same command, commit
    and prepared data for every seed)."""
    from mlflow.entities import RunTag

    child = client.get_run(child_id)
    tags = [RunTag(key, value) for key, value in child.data.tags.items()
            if key.startswith("mlflow.source.") or key == "mlflow.user"]
    # seeds finishing together both get here: a batch retries an insert another process made
    # first (set_tag does not, and one seed failed with a UNIQUE constraint error)
    client.log_batch(parent_id, tags=tags)
    inputs = child.inputs.dataset_inputs if child.inputs else []
    if inputs:
        log_inputs(client, parent_id, list(inputs))


def log_inputs(client: Any, run_id: str, inputs: list) -> None:
    """``client.log_inputs``, once more after a moment if it fails: two stages logging the same
    new dataset (or linking it to one parent run) at once make MLflow's store insert the row
    twice and one insert fails; the row exists then, so the second call succeeds."""
    try:
        client.log_inputs(run_id, datasets=inputs)
    except Exception:  # noqa: BLE001
        time.sleep(0.5)
        client.log_inputs(run_id, datasets=inputs)
