"""The experiment's design: which training stage instances the DAG runs, which tables the
paper has, which rows each holds, and where each row's runs live (restricted to what
``params.yaml`` configures to run). Read by the aggregation, the claims, the estimate and
the notebook; ``dvc.yaml`` and ``dag/`` spell the same instances for DVC
(``tests/integration/test_dvc_repro.py`` keeps them in step)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.core.config import Params
from pipeline.core.runs import RunSpec, surface_point
from pipeline.methods import REGISTRY

METRICS = ("test_acc", "test_top5", "test_nll", "test_ece")
LABELS = {"test_acc": "top-1 (%)", "test_top5": "top-5 (%)", "test_nll": "NLL",
          "test_ece": "ECE"}


@dataclass(frozen=True)
class Row:
    label: str
    stage: str
    name: str  # method (baselines) or variant (kd_ablation, introspective)

    def spec(self, seed: int) -> RunSpec:
        """The run behind this row for ``seed`` (its folder and MLflow run name)."""
        return RunSpec.of(self.stage, self.name, seed)


@dataclass(frozen=True)
class Instance:
    """A stage instance as ``dvc stage list`` names it: the runs it trains and the instances
    it waits for (besides ``prepare``). ``stage`` is where its runs live (``tune`` also for
    ``tune_with_teacher``); ``runs`` counts them (a tune instance: one per tuning seed)."""

    name: str
    stage: str
    method: str
    runs: int
    after: tuple[str, ...] = ()


def instances(params: Params) -> list[Instance]:
    """Every training stage instance the DAG expands to, and ``tune_select`` (no runs).

    A seed's KD instances wait for that seed's teacher (``teacher@<seed>``), which waits
    for ``shared_teacher`` (a fixed split's one teacher; per_seed: each trains its own);
    the tuned rows and the response surface wait for ``tune_select``, which waits for every
    tuning instance; the rest need only the prepared data.
    """
    from pipeline.train.teachers import tuning_needs_teacher

    t, per_seed = params.tune, params.data.per_seed
    shared = ("shared_teacher",)
    out = [Instance("shared_teacher", "teacher", "ce", 0 if per_seed else 1)]
    out += [Instance(f"teacher@{s}", "teacher", "ce", int(per_seed), shared)
            for s in params.seeds]
    tuning_runs = int(per_seed and tuning_needs_teacher(params))
    out += [Instance(f"tuning_teacher@{s}", "teacher", "ce", tuning_runs, shared)
            for s in t.seeds]
    for seed in params.seeds:
        teacher = (f"teacher@{seed}",)
        out += [Instance(f"baselines@{m}-{seed}", "baselines", m, 1)
                for m in params.baselines.methods]
        out += [Instance(f"kd_ablation@{v}-{seed}", "kd_ablation", "kd", 1, teacher)
                for v in params.kd_ablation.variants]
        out += [Instance(f"introspective@{v}-{seed}", "introspective", "introspective", 1)
                for v in params.introspective_ablation.variants]
    runs = len(t.seeds) if t.enabled else 0  # a trial's runs (disabled: a skipped record)
    tuning = [Instance(f"tune@{m}-{k}", "tune", m, runs) for m in t.methods for k in t.trials]
    tuning += [Instance(f"tune_with_teacher@{m}-{k}", "tune", m, runs,
                        tuple(f"tuning_teacher@{s}" for s in t.seeds))
               for m in t.teacher_methods for k in t.trials]
    out += [*tuning, Instance("tune_select", "tune_select", "", 0,
                              tuple(i.name for i in tuning))]
    runs = 1 if t.enabled else 0  # tune.enabled: false writes a note (pipeline/train/offmode)
    for seed in params.seeds:
        out += [Instance(f"tuned@{m}-{seed}", "tuned", m, runs, ("tune_select",))
                for m in t.methods]
        out += [Instance(f"tuned_with_teacher@{m}-{seed}", "tuned", m, runs,
                         ("tune_select", f"teacher@{seed}")) for m in t.teacher_methods]
    s = params.surface  # the grid's points start from the tuned recipes
    runs = len(s.seeds) if s.enabled else 0
    out += [Instance(f"surface@{surface_point(x, y)}", "surface", s.method, runs,
                     ("tune_select",)) for x in s.x for y in s.y]
    out.append(Instance("surface_reference", "surface", s.reference, runs, ("tune_select",)))
    return out


CE_ROW = Row("CE", "baselines", "ce")
TUNED_CE_ROW = Row("CE (tuned)", "tuned", "ce")


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    rows: tuple[Row, ...]
    reference: Row = CE_ROW  # paired differences are taken to this row


def default_row(method: str, params: Params) -> Row | None:
    """Where the default-recipe run of ``method`` lives (None when it is not configured).

    KD and IL have no ``baselines`` instance: their ``full`` variant is that run.
    """
    info = REGISTRY[method]
    if method == "kd":
        stage, name, variants = "kd_ablation", "full", params.kd_ablation.variants
    elif method == "introspective":
        stage, name, variants = "introspective", "full", params.introspective_ablation.variants
    else:
        stage, name, variants = "baselines", method, ["full"] if method in \
            params.baselines.methods else []
    return Row(info.label, stage, name) if "full" in variants else None


def tables(params: Params) -> list[Table]:
    """T1-T4 (docs/pipeline.md), restricted to what ``params.yaml`` configures to run."""
    tuned = set(params.tune.all_methods) if params.tune.enabled else set()

    def b(method: str) -> list[Row]:
        """The default-recipe row and, when tuning is on, the tuned row of a method."""
        row = default_row(method, params)
        rows = [row] if row else []
        if method in tuned:
            rows.append(Row(f"{REGISTRY[method].label} (tuned)", "tuned", method))
        return rows

    def compared(table: str) -> list[str]:
        """The registry's methods of a table, in registry order (CE and IL frame every table)."""
        return [m for m, info in REGISTRY.items()
                if info.table == table and m not in ("ce", "introspective")]

    reference = TUNED_CE_ROW if "ce" in tuned else CE_ROW
    ce = [CE_ROW] if "ce" in params.baselines.methods else []  # T1 and T4: untuned recipes
    kd, il = REGISTRY["kd"], REGISTRY["introspective"]
    return [
        Table("T1_kd_components", "T1 — which part of the teacher's output makes KD work",
              (*ce, *[Row(kd.variant_label(v), "kd_ablation", v)
                      for v in params.kd_ablation.variants])),
        Table("T2_regularizers", "T2 — IL vs regularizers",
              (*b("ce"), *[r for m in compared("T2") for r in b(m)], *b("introspective")),
              reference),
        Table("T3_peers_teachers", "T3 — IL vs learning from peers (DML) and a teacher (KD)",
              (*b("ce"), *[r for m in compared("T3") for r in b(m)], *b("introspective")),
              reference),
        Table("T4_introspective_components", "T4 — does IL's gain come from class similarity?",
              (*ce, *[Row(il.variant_label(v), "introspective", v)
                      for v in params.introspective_ablation.variants])),
    ]
