"""Which stages to run: those DVC finds changed and everything downstream, in an order
that starts the stages gating most of the DAG first."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError

# DVC versions whose internals this runner uses (repo.index.graph, stage.changed(), the
# wording of its log lines) were tested with: major.minor
TESTED_DVC = ("3.67",)


@dataclass
class Plan:
    """Stages to run and, for each, the stages in the plan it waits for."""

    waits_for: dict[str, set[str]]  # keyed by DVC's address, e.g. dag/tune/dvc.yaml:tune@ce
    order: list[str] = field(default_factory=list)  # a topological order, for display
    targets: list[str] = field(default_factory=list)  # the targets asked for, as addresses
    downstream: dict[str, int] = field(default_factory=dict)  # plan stages waiting on each

    def ready(self, done: set[str], started: set[str]) -> list[str]:
        """Stages whose upstream is done, those that gate the most of the plan first."""
        ready = [s for s in self.order if s not in started and self.waits_for[s] <= done]
        return sorted(ready, key=lambda s: -self.downstream.get(s, 0))

    def batch(self, ready: list[str], workers: int, cap: int) -> list[str]:
        """What one worker starts next: the first ready stage alone, or, when only the last
        stage waits for it, up to ``cap`` such stages (fewer as they run out)."""
        first = ready[0]
        if cap <= 1 or self.downstream.get(first, 0) > 1:
            return [first]
        leaves = [s for s in ready if self.downstream.get(s, 0) <= 1]
        return leaves[:max(1, min(cap, len(leaves) // (2 * workers)))]


def label(address: str) -> str:
    """A stage's name without its dvc.yaml path: ``baselines@ce-0``."""
    return address.rsplit(":", 1)[-1]


def make_plan(targets: Iterable[str] = (), force: bool = False) -> Plan:
    """Changed stages (DVC's own check) and everything downstream of them.

    A target is a stage's DVC address, its bare name (``baselines@ce-0``: names are unique
    across the repo's dvc.yaml files) or a matrix stage's name for all its instances
    (``kd_ablation``), as ``dvc repro`` takes them within one dvc.yaml.
    """
    from dvc.exceptions import DvcException

    try:
        return _plan(targets, force)
    except DvcException as exc:  # a broken dvc.yaml, params.yaml or lock file: DVC's words
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise ConfigError(f"{exc}{cause}".replace("\n", " ")) from None


def _plan(targets: Iterable[str], force: bool) -> Plan:
    import networkx as nx
    from dvc.repo import Repo

    with Repo() as repo:
        graph = repo.index.graph  # edge: stage -> a stage it depends on
        named: dict[str, list[Any]] = {}
        for stage in graph.nodes:
            for key in {stage.addressing, label(stage.addressing),
                        label(stage.addressing).split("@")[0]}:
                named.setdefault(key, []).append(stage)
        unknown = [t for t in targets if t not in named]
        if unknown:
            known = sorted(k for k in named if ":" not in k)
            raise ConfigError(f"dvc.yaml: no stage named {', '.join(unknown)} "
                              f"(known: e.g. {', '.join(known[:6])}, ...)")
        asked = {s for t in targets for s in named[t]}
        scope = set(graph.nodes)
        if targets:
            scope = set().union(*[{s, *nx.descendants(graph, s)} for s in asked])
        with repo.lock:
            changed = {s for s in scope if force or s.changed()}
        reverse = graph.reverse(copy=False)  # edge: stage -> a stage that depends on it
        run = set(changed)
        for stage in changed:
            run |= nx.descendants(reverse, stage) & scope
        order = [s for s in reversed(list(nx.topological_sort(graph))) if s in run]
        waits = {s.addressing: {d.addressing for d in nx.descendants(graph, s) if d in run}
                 for s in order}
        downstream = {s.addressing: len(nx.descendants(reverse, s) & run) for s in order}
    return Plan(waits, [s.addressing for s in order], sorted(s.addressing for s in asked),
                downstream)


def lock_of(address: str) -> Path:
    """The lock file that records a stage: ``dag/tune/dvc.yaml:tune@ce`` ->
    ``dag/tune/dvc.lock``, a spine stage (``prepare``) -> ``dvc.lock``."""
    path = address.rpartition(":")[0]
    return Path(path or "dvc.yaml").with_suffix(".lock")


def untested_dvc() -> str | None:
    """The installed DVC's version when this runner was not tested with it, else None."""
    from importlib.metadata import version

    found = version("dvc")
    return None if ".".join(found.split(".")[:2]) in TESTED_DVC else found
