"""Integration: the repo's dvc.yaml in a temporary git repo, `dvc repro` on tiny params.

One module-scoped run; each test below checks one concern of it. The edit tests change a
param or a code file, read `dvc status`, and put the file back as it was.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.orchestrate.plan import label

from ..helpers import REPO, dvc, make_dvc_project, seed_runs, sh, tiny_raw


def trials(stage: str) -> set[str]:
    """A tuning stage's instances in the tiny DAG: one per trial (tune.trials [0, 1])."""
    return {f"{stage}-0", f"{stage}-1"}


SURFACE = {"surface@0.3-0.9", "surface@0.7-0.9", "surface_reference"}  # IL's alpha x gt_prob
STUDENT_STAGES = {
    "baselines@ce-0", "baselines@label_smoothing-0", "kd_ablation@full-0",
    "kd_ablation@shuffled_non_gt-0", "introspective@full-0", *trials("tune@ce"),
    *trials("tune@introspective"), *trials("tune_with_teacher@kd"), "tuned@ce-0",
    "tuned@introspective-0", "tuned_with_teacher@kd-0", *SURFACE}
# a fixed split: shared_teacher trains, each seed's instance (tuning seed 100's too) copies it
TEACHERS = {"shared_teacher", "teacher@0", "tuning_teacher@100"}
CODE = {"code_train", "code_tune", "code_surface"}  # a manifest per stage script (dag/code)
SHARED_RUN = "teacher@shared/seed-0"


def tiny_dag_raw(base_raw: dict) -> dict:
    raw = tiny_raw(base_raw)
    raw["baselines"]["methods"] = ["ce", "label_smoothing"]
    raw["kd_ablation"]["variants"] = ["full", "shuffled_non_gt"]
    raw["introspective_ablation"]["variants"] = ["full"]
    raw["tune"].update(methods=["ce", "introspective"], teacher_methods=["kd"], trials=[0, 1],
                       seeds=[100])
    raw["surface"].update(x=[0.3, 0.7], y=[0.9], seeds=[100])
    return raw


@pytest.fixture(scope="module")
def project(tmp_path_factory, base_raw, migrated_db) -> Iterator[tuple[Path, str]]:
    root = make_dvc_project(tmp_path_factory.mktemp("dag") / "proj", tiny_dag_raw(base_raw),
                            migrated_db)
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\ncheckpoints/\n")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny")
    out = dvc(root, "repro").stdout
    yield root, out


def _runs(root: Path) -> list:
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_every_stage_ran_once_and_wrote_its_outputs(project):
    root, out = project
    ran = {label(line.split("'")[1]) for line in out.splitlines()
           if line.startswith("Running stage")}
    assert ran == STUDENT_STAGES | TEACHERS | CODE | {"prepare", "tune_select", "aggregate"}
    assert (root / "data/prepared/data.npz").is_file()
    shared = (root / "models/teacher/shared/seed-0/model.pt").read_bytes()
    for seed in ("seed-0", "tuning/seed-100"):  # what the students of each seed distil
        assert (root / f"models/teacher/{seed}/model.pt").read_bytes() == shared
    for folder in ("teacher/seed-0", "baselines/ce-0", "kd_ablation/full-0", "introspective/full-0",
                   "tuned/kd-0"):
        metrics = json.loads((root / "results" / folder / "metrics.json").read_text())
        assert {"test_acc", "test_nll", "test_ece", "test_top5"} <= set(metrics)
        assert (root / "results" / folder / "history.csv").read_text().startswith("epoch,")
    # one run per result: KD from a teacher is kd_ablation@full, never a second training
    assert not (root / "results/baselines/kd-0").exists()
    assert json.loads(dvc(root, "status", "--json").stdout) == {}
    shown = json.loads(dvc(root, "metrics", "show", "--json").stdout)
    assert len(json.dumps(shown).split("metrics.json")) - 1 == 1 + 5 + 3


def test_dag_edges_follow_the_teacher(project):
    """Teacher-free methods and IL never wait for (or rerun after) the teacher."""
    root, _ = project
    dot = dvc(root, "dag", "--dot").stdout
    edges = {(label(a), label(b)) for a, b in re.findall(r'"([^"]+)" -> "([^"]+)"', dot)}
    assert ("teacher@0", "kd_ablation@full-0") in edges
    assert ("tuning_teacher@100", "tune_with_teacher@kd-0") in edges
    assert ("shared_teacher", "teacher@0") in edges
    assert ("teacher@0", "tune_with_teacher@kd-0") not in edges  # tuning: its own seed's
    assert ("prepare", "baselines@ce-0") in edges
    for free in ("baselines@ce-0", "introspective@full-0", "tune@ce-0", "tuned@ce-0"):
        assert not any((t, free) in edges for t in TEACHERS)


def test_the_design_declares_the_instances_and_edges_dvc_runs(project):
    """``results.design.instances`` (what the estimate schedules) is the DAG dvc.yaml and
    dag/ expand to: the same stage instances, and between them the same edges."""
    from pipeline.core.config import load_params
    from pipeline.results.design import instances

    root, out = project
    declared = {i.name: i for i in instances(load_params(root / "params.yaml"))}
    ran = {label(line.split("'")[1]) for line in out.splitlines()
           if line.startswith("Running stage")}
    assert set(declared) == ran - CODE - {"prepare", "aggregate"}
    dot = dvc(root, "dag", "--dot").stdout
    edges = {(label(a), label(b)) for a, b in re.findall(r'"([^"]+)" -> "([^"]+)"', dot)}
    among = {(a, b) for a, b in edges if a in declared and b in declared}
    assert among == {(a, i.name) for i in declared.values() for a in i.after}
    # a fixed split: the seeds' teacher instances copy the shared one, training nothing
    assert {i.name for i in declared.values() if i.runs == 0} == {
        "tune_select", "teacher@0", "tuning_teacher@100"}


def test_mlflow_has_one_finished_run_per_training(project):
    root, _ = project
    runs = [r for r in _runs(root) if r.data.tags.get("stage") not in ("aggregate", "tune",
                                                                        "surface")
            and r.data.tags.get("ilkd_role") != "parent"]
    assert sorted(r.info.run_name for r in runs) == [
        "baselines@ce-0", "baselines@label_smoothing-0", "introspective@full-0",
        "kd_ablation@full-0", "kd_ablation@shuffled_non_gt-0", SHARED_RUN, "tuned@ce-0",
        "tuned@introspective-0", "tuned@kd-0"]
    assert all(r.info.status == "FINISHED" for r in runs)
    teacher_run = json.loads((root / "results/teacher/seed-0/mlflow_run.json").read_text())
    assert {r.info.run_id for r in runs if r.info.run_name == SHARED_RUN} == {
        teacher_run["run_id"]}
    il = [r for r in runs if r.info.run_name == "introspective@full-0"][0]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    names = {a.path for a in client.list_artifacts(il.info.run_id)}
    assert {"similarity.csv", "similarity.png", "explanations.png"} <= names
    assert len(client.get_metric_history(il.info.run_id, "target_entropy")) == 2


def test_mlflow_runs_table_columns_and_tree(project):
    """What the MLflow UI's runs table shows without configuring anything: Source (command,
    commit), Dataset (with the prepared data's digest), Models (loadable, same accuracy),
    a description, and one parent per method/variant with its seeds as children."""
    import mlflow.pytorch

    from pipeline.core.prepared import load_prepared
    from pipeline.train.engine import DeviceData, predict

    root, _ = project
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ilkd-quick-digits")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    head = sh(root, "git", "rev-parse", "HEAD").stdout.strip()
    meta = json.loads((root / "data/prepared/meta.json").read_text())
    runs = {r.info.run_name: r for r in seed_runs(client)}
    for name in (SHARED_RUN, "baselines@ce-0", "kd_ablation@full-0", "tune@ce/trial-0/ce-100"):
        tags = runs[name].data.tags
        assert tags["mlflow.source.git.commit"] == head and tags["mlflow.source.type"] == "LOCAL"
        assert tags["mlflow.source.name"].startswith("python -m stages.")
        (dataset,) = runs[name].inputs.dataset_inputs
        assert dataset.dataset.name == "digits"
        assert dataset.dataset.digest == meta["sha256"][:36]
        assert json.loads(dataset.dataset.profile)["sha256"] == meta["sha256"]
        assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "training"
    assert "uniform" not in runs["kd_ablation@full-0"].data.tags["mlflow.note.content"]
    assert runs["kd_ablation@shuffled_non_gt-0"].data.tags["mlflow.note.content"] == (
        "KD, control: shuffled non-GT mass (class similarity destroyed): T1, seed 0")

    # the logged model of a run reproduces its metrics.json test accuracy
    prepared = load_prepared(root / "data/prepared")
    data = DeviceData(prepared, __import__("torch").device("cpu"))
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    for name, folder in (("baselines@ce-0", "baselines/ce-0"), (SHARED_RUN, "teacher/seed-0")):
        (output,) = runs[name].outputs.model_outputs
        model = mlflow.pytorch.load_model(f"models:/{output.model_id}")
        acc = 100.0 * float(predict(model, data, "test", 512).argmax(1).eq(data.y["test"])
                            .double().mean())
        expected = json.loads((root / "results" / folder / "metrics.json").read_text())
        assert acc == pytest.approx(expected["test_acc"])
        logged = client.get_logged_model(output.model_id)
        assert {m.key for m in logged.metrics} >= {"test_acc", "val_acc"}
    assert not runs["tune@ce/trial-0/ce-100"].outputs.model_outputs  # trials log no model
    # the teacher is registered; the KD runs name the version they distilled
    (version,) = client.search_model_versions("name = 'ilkd-quick-teacher'")
    assert version.run_id == runs[SHARED_RUN].info.run_id
    assert runs["kd_ablation@full-0"].data.tags["teacher_model_version"] == str(version.version)

    # one parent per group, seeds as children, parent metrics = the children's mean
    parents = [r for r in _runs(root) if r.data.tags.get("ilkd_role") == "parent"]
    groups = sorted(p.data.tags["ilkd_group"] for p in parents)  # one configuration each
    assert groups == sorted({r.data.tags["ilkd_group"] for r in runs.values()
                             if r.data.tags.get("stage") not in ("teacher", "aggregate")})
    assert all(p.info.run_name.startswith(p.data.tags["ilkd_group"]) for p in parents)
    ce = [p for p in parents if p.data.tags["ilkd_group"] == "baselines@ce"][0]
    assert runs["baselines@ce-0"].data.tags["mlflow.parentRunId"] == ce.info.run_id
    expected = json.loads((root / "results/baselines/ce-0/metrics.json").read_text())
    assert ce.data.metrics["test_acc_mean"] == pytest.approx(expected["test_acc"])
    # a parent row shows its seeds' Source and Dataset columns too
    assert ce.data.tags["mlflow.source.git.commit"] == head
    assert ce.data.tags["mlflow.source.name"] == runs["baselines@ce-0"].data.tags[
        "mlflow.source.name"]
    (dataset,) = client.get_run(ce.info.run_id).inputs.dataset_inputs
    assert dataset.dataset.digest == meta["sha256"][:36]


def test_tuned_runs_train_with_the_selected_configuration(project):
    root, _ = project
    tuned = yaml.safe_load((root / "params_tuned.yaml").read_text())
    assert set(tuned) == {"ce", "introspective", "kd", "selection"}
    records = [json.loads((root / f"results/tune/kd/trial-{t}/trial.json").read_text())
               for t in (0, 1)]
    best = max(records, key=lambda t: (t["val_acc"], -t["val_nll"]))
    assert tuned["kd"] == best["overrides"] and tuned["selection"]["kd"]["trial"] == best["trial"]
    run_id = json.loads((root / "results/tuned/kd-0/mlflow_run.json").read_text())["run_id"]
    logged = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(run_id).data.params
    assert float(logged["train.lr"]) == best["overrides"]["train"]["lr"]
    assert float(logged["kd.alpha"]) == best["overrides"]["kd"]["alpha"]


def test_the_response_surface_varies_only_its_knobs(project):
    """Each point is IL at its tuned recipe with the two knobs and surface.fixed set; the
    table's Δ is the point's validation accuracy minus the reference's on the same seed."""
    root, _ = project
    tuned = yaml.safe_load((root / "params_tuned.yaml").read_text())
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    reference = json.loads((root / "results/surface/reference/point.json").read_text())
    assert reference["method"] == "ce" and reference["seeds"] == [100]
    rows = []
    for alpha in (0.3, 0.7):
        point = json.loads((root / f"results/surface/{alpha}-0.9/point.json").read_text())
        assert point["knobs"] == {"alpha": alpha, "gt_prob": 0.9}
        run_file = root / f"results/surface/{alpha}-0.9/introspective-100/mlflow_run.json"
        logged = client.get_run(json.loads(run_file.read_text())["run_id"]).data.params
        assert float(logged["introspective.alpha"]) == alpha
        assert float(logged["introspective.gt_prob"]) == 0.9
        assert logged["introspective.target_mode"] == "fixed_gt"
        lr = tuned["introspective"].get("train", {}).get("lr")
        if lr is not None:  # the rest of the recipe is the tuned one
            assert float(logged["train.lr"]) == lr
        rows.append((alpha, point["val_acc"][0] - reference["val_acc"][0]))
    table = (root / "results/tables/surface.csv").read_text().splitlines()
    header = table[0].split(",")
    for line, (alpha, delta) in zip(table[1:], rows, strict=True):
        cells = dict(zip(header, line.split(","), strict=True))
        assert float(cells["alpha"]) == alpha
        assert abs(float(cells["d_val_acc"]) - delta) < 1e-9
    assert (root / "results/figures/surface.png").stat().st_size > 5000
    assert "Response surface" in (root / "results/tables/surface.md").read_text()


def test_aggregate_tables_figures_and_similarity(project):
    root, _ = project
    t1 = (root / "results/tables/T1_kd_components.md").read_text()
    assert "| CE | 1 |" in t1 and "KD shuffled non-GT" in t1
    t3 = (root / "results/tables/T3_peers_teachers.md").read_text()
    assert "| KD from a teacher (tuned) | 1 |" in t3 and "Δ top-1 vs CE (tuned)" in t3
    # T3's KD row is T1's KD (full) run
    t1_kd = [line for line in t1.splitlines() if line.startswith("| KD (full)")][0]
    t3_kd = [line for line in t3.splitlines() if line.startswith("| KD from a teacher |")][0]
    assert t1_kd.split("|")[3] == t3_kd.split("|")[3]
    everything = (root / "results/tables/all_tables.md").read_text()
    assert everything.startswith(("Teacher: test top-1", "**Warning: the teacher"))
    rho = (root / "results/tables/similarity_vs_teacher.csv").read_text().splitlines()
    assert rho[0] == "variant,seed,rank_corr_teacher" and rho[1].startswith("full,0,")
    assert -1 <= float(rho[1].split(",")[2]) <= 1
    assert (root / "results/figures/T2_regularizers_accuracy.png").stat().st_size > 5000
    summary = [r for r in _runs(root) if r.data.tags.get("stage") == "aggregate"]
    assert len(summary) == 1


def test_notebook_rebuilds_t1_from_mlflow(project):
    import nbclient
    import nbformat

    root, _ = project
    t1 = (root / "results/tables/T1_kd_components.md").read_text()
    shutil.copytree(REPO / "notebooks", root / "notebooks", dirs_exist_ok=True)
    notebook = nbformat.read(root / "notebooks/results.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(root / "notebooks")}}).execute()
    printed = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert t1.strip() in printed


# ---------------------------------------------------------------- what an edit reruns

def _set(raw: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for key in path:
        raw = raw[key]
    raw[last] = value


PARAM_EDITS = [
    # (key, new value, stage instances `dvc status` must report)
    ("introspective.tau", 0.05, {"introspective@full-0", *trials("tune@introspective"),
                                 "tuned@introspective-0", *SURFACE - {"surface_reference"}}),
    ("kd.T", 2.0, {"kd_ablation@full-0", "kd_ablation@shuffled_non_gt-0",
                   *trials("tune_with_teacher@kd"), "tuned_with_teacher@kd-0"}),
    ("label_smoothing.epsilon", 0.2, {"baselines@label_smoothing-0"}),
    ("tune.own.introspective", {"gt_prob": [0.7, 0.9]}, trials("tune@introspective")),
    ("tune.shared.lr", [0.01, 0.05, 0.2], trials("tune@ce") | trials("tune@introspective")
     | trials("tune_with_teacher@kd")),
    ("student.train.weight_decay", 0.001, STUDENT_STAGES),
    ("teacher.train.lr", 0.02, TEACHERS),
    ("introspective_ablation.variants", ["full", "uniform_non_gt"], {"introspective@uniform_non_gt-0",
                                                            "aggregate"}),
    # a new grid value trains only its new points; the seeds are every point's and the band's
    ("surface.x", [0.3, 0.7, 0.9], {"surface@0.9-0.9", "aggregate"}),
    ("surface.seeds", [100, 101], SURFACE | {"aggregate"}),
    ("surface.fixed", {"target_mode": "fixed_gt", "T": 2.0}, SURFACE - {"surface_reference"}
     | {"aggregate"}),
]


def _status_after(root: Path, path: str, change: Callable[[str], str]) -> set[str]:
    file = root / path
    before = file.read_text()
    file.write_text(change(before))
    try:
        return set(map(label, json.loads(dvc(root, "status", "--json").stdout)))
    finally:
        file.write_text(before)


@pytest.mark.parametrize(("key", "value", "expected"), PARAM_EDITS,
                         ids=[e[0] for e in PARAM_EDITS])
def test_a_params_edit_reruns_exactly_what_reads_it(project, key, value, expected):
    root, _ = project

    def edit(text: str) -> str:
        raw = yaml.safe_load(text)
        _set(raw, key, value)
        return yaml.safe_dump(raw, sort_keys=False)

    assert _status_after(root, "params.yaml", edit) == expected


CODE_EDITS = [
    # per-run figures are drawn by every training run, the tables' by aggregate
    ("pipeline/figures.py", STUDENT_STAGES | TEACHERS | {"aggregate"}),
    ("pipeline/results/aggregate.py", {"aggregate"}),
    ("pipeline/results/selection.py", {"tune_select"}),
    ("pipeline/methods/label_smoothing.py", {"baselines@label_smoothing-0"}),
    ("pipeline/methods/kd.py", {"kd_ablation@full-0", "kd_ablation@shuffled_non_gt-0",
                                *trials("tune_with_teacher@kd"), "tuned_with_teacher@kd-0"}),
    ("pipeline/train/engine.py", STUDENT_STAGES | TEACHERS),
    # per-file deps: prepare and tune_select never import the metrics or the presets
    ("pipeline/core/metrics.py", STUDENT_STAGES | TEACHERS | {"aggregate"}),
    ("pipeline/core/presets.py", STUDENT_STAGES | TEACHERS),
    ("pipeline/prepare/datasets.py", {"prepare"}),
]


@pytest.mark.parametrize(("path", "expected"), CODE_EDITS, ids=[e[0] for e in CODE_EDITS])
def test_a_code_edit_reruns_exactly_what_runs_it(project, path, expected):
    """A file of a stage script's imports is a dependency of its code stage, not of each
    instance: `dvc status` lists that code stage until it has rewritten its manifest, and
    then the instances that read it. So: the edit, the code stages, then DVC's status."""
    root, _ = project
    file = root / path
    before = file.read_text()
    file.write_text(before + "\n# edited\n")
    try:
        listed = set(map(label, json.loads(dvc(root, "status", "--json").stdout)))
        assert listed - CODE <= expected
        dvc(root, "repro", "dag/code/dvc.yaml")  # what `dvc repro` runs first
        assert set(map(label, json.loads(dvc(root, "status", "--json").stdout))) == expected
    finally:
        file.write_text(before)
        dvc(root, "repro", "dag/code/dvc.yaml")  # the manifests as they were (run-cache)
    assert json.loads(dvc(root, "status", "--json").stdout) == {}


def test_a_code_stage_names_what_its_script_imports_but_it_does_not_list(project):
    """A new import the code stage does not declare would go untracked: the stage fails,
    exit 2, and names the line to add, before any instance runs."""
    root, _ = project
    dag = root / "dag/code/dvc.yaml"
    before = dag.read_text()
    dag.write_text(before.replace("      - pipeline/train/sgd.py\n", "", 1))
    try:
        proc = subprocess.run([sys.executable, "-m", "stages.code", "train"], cwd=root,
                              capture_output=True, text=True)
        assert proc.returncode == 2
        assert "code_train" in proc.stderr and "add: pipeline/train/sgd.py" in proc.stderr
    finally:
        dag.write_text(before)


def test_a_new_module_nothing_imports_reruns_nothing(project):
    """Stages depend on the files they import, not on code folders: a new file in
    pipeline/core, pipeline/train or pipeline/methods changes no instance's dependencies (in
    pipeline/methods/registry only aggregate's, which reads every method's entry)."""
    root, _ = project
    for folder, expected in (("pipeline/core", set()), ("pipeline/train", set()),
                             ("pipeline/methods", set()),
                             ("pipeline/methods/registry", {"aggregate"})):
        new = root / folder / "unused_helper.py"
        new.write_text("HELPER = 1\n")
        try:
            assert set(map(label, json.loads(dvc(root, "status", "--json").stdout))) == \
                expected, folder
        finally:
            new.unlink()


TOY_LOSS = """\"\"\"A toy method for the test that adding a method retrains nothing.\"\"\"

from __future__ import annotations

from pipeline.methods.base import Method, StepOutput, cross_entropy


class Toy(Method):
    @classmethod
    def from_config(cls, cfg, make_model, teacher, variant):
        return cls(make_model())

    def step(self, x, y, epoch):
        logits = self.student(x)
        return StepOutput({"ce": cross_entropy(logits, y)}, logits)
"""
TOY_ENTRY = """\"\"\"The toy method's section and registry entry.\"\"\"

from __future__ import annotations

from pipeline.core.schema import Section, UnitFloat
from pipeline.methods import MethodInfo


class ToyConfig(Section):
    weight: UnitFloat = 0.5


METHOD = MethodInfo("toy", "Toy", ToyConfig, label="toy", rank=99)
"""


def test_adding_a_method_reruns_only_its_new_instances(project):
    """The recipe of docs/contributing.md: one module (its loss, section and METHOD line),
    its params section, and its name in baselines.methods. `dvc status` then lists the new
    method's instances and the aggregate that tabulates them, nothing that existed."""
    root, _ = project
    loss, entry = root / "pipeline/methods/toy.py", root / "pipeline/methods/registry/toy.py"
    params = root / "params.yaml"
    before = params.read_text()
    raw = yaml.safe_load(before)
    raw["toy"] = {"weight": 0.5}
    raw["baselines"]["methods"] = [*raw["baselines"]["methods"], "toy"]
    loss.write_text(TOY_LOSS)
    entry.write_text(TOY_ENTRY)
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        changed = set(map(label, json.loads(dvc(root, "status", "--json").stdout)))
        # the project's code sees the new method: its params validate, its loss builds
        check = subprocess.run(
            [sys.executable, "-c", "from pipeline.core.config import load_params; "
             "from pipeline.methods import REGISTRY; p = load_params(); "
             "print(REGISTRY['toy'].load().__name__, p.toy.weight)"],
            cwd=root, capture_output=True, text=True)
    finally:
        loss.unlink()
        entry.unlink()
        params.write_text(before)
    assert changed == {"baselines@toy-0", "aggregate"}
    assert check.stdout.split() == ["Toy", "0.5"], check.stderr


def test_an_unchanged_tuning_choice_retrains_nothing(project):
    """tune_select reruns after its code changes, rewrites the same choices, and no tuned
    instance reruns: each lists only its own method's key of params_tuned.yaml."""
    root, _ = project
    file = root / "pipeline/results/selection.py"
    before = file.read_text()
    file.write_text(before + "\n# edited\n")
    try:
        out = dvc(root, "repro").stdout
    finally:
        file.write_text(before)
    ran = {label(line.split("'")[1]) for line in out.splitlines()
           if line.startswith("Running stage")}
    assert ran == {"tune_select"}
    dvc(root, "commit", "-f", "tune_select")
    assert json.loads(dvc(root, "status", "--json").stdout) == {}
