"""Equal-budget tuning: the search, the selection on validation, the tuned params."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from pipeline.core.config import parse_params
from pipeline.core.errors import ConfigError
from pipeline.results.selection import select, write_tuned
from pipeline.train.tune import apply, search_space, trial_config, tuned_params


@pytest.fixture
def params(base_raw):
    return parse_params(copy.deepcopy(base_raw))


def test_every_method_gets_the_same_number_of_distinct_configurations(params):
    budget = len(params.tune.trials)
    for method in params.tune.methods:
        configs = [trial_config(params, method, t) for t in params.tune.trials]
        assert len(configs) == budget
        assert len({yaml.safe_dump(c, sort_keys=True) for c in configs}) == budget
        for config in configs:
            assert set(config["train"]) == set(params.tune.shared)  # shared knobs always tuned
            assert set(config) - {"train"} <= {method}
    assert len(search_space(params, "ce")) == 9  # 3 lr x 3 weight decay
    assert len(search_space(params, "kd")) == 9 * 4  # x alpha x T
    assert trial_config(params, "kd", 1) == trial_config(params, "kd", 1)  # deterministic


def test_too_small_a_space_is_an_error(base_raw):
    raw = copy.deepcopy(base_raw)
    raw["tune"].update(shared={"lr": [0.1]}, trials=[0, 1, 2, 3])
    with pytest.raises(ConfigError, match="ce has only 1 configurations for 4 trials"):
        trial_config(parse_params(raw), "ce", 0)


def test_apply_overrides_student_recipe_and_method_section(params):
    tuned = apply(params, {"train": {"lr": 0.02, "weight_decay": 0.001}, "kd": {"T": 2.0}})
    assert tuned.student.train.lr == 0.02 and tuned.student.train.weight_decay == 0.001
    assert tuned.kd.T == 2.0 and tuned.kd.alpha == params.kd.alpha
    assert tuned.teacher.train.lr == params.teacher.train.lr  # the teacher is never tuned


def test_select_by_validation_accuracy_then_nll():
    trials = [
        {"method": "kd", "trial": 0, "val_acc": 97.0, "val_nll": 0.1, "overrides": {"a": 0}},
        {"method": "kd", "trial": 1, "val_acc": 98.0, "val_nll": 0.3, "overrides": {"a": 1}},
        {"method": "kd", "trial": 2, "val_acc": 98.0, "val_nll": 0.2, "overrides": {"a": 2}},
        {"method": "ce", "trial": 0, "val_acc": 90.0, "val_nll": 0.5, "overrides": {"b": 0}},
    ]
    best = select(trials)
    assert best["kd"]["trial"] == 2 and best["ce"]["trial"] == 0


def test_tuned_params_roundtrip(tmp_path, params, base_raw):
    path = tmp_path / "params_tuned.yaml"
    with pytest.raises(ConfigError, match="params_tuned.yaml: tuned params not found"):
        tuned_params(params, "kd", path)
    write_tuned({"kd": {"method": "kd", "trial": 3, "val_acc": 98.0, "val_nll": 0.1,
                        "overrides": {"train": {"lr": 0.02}, "kd": {"alpha": 0.5}}}},
                ["ce", "kd"], path)
    tuned = tuned_params(params, "kd", path)
    assert tuned.student.train.lr == 0.02 and tuned.kd.alpha == 0.5
    assert tuned_params(params, "ce", path) == params  # nothing chosen: the defaults
    # one top-level key per method holding only its overrides (a DVC param of tuned@<method>);
    # how it was chosen sits apart, where no training stage reads it
    written = yaml.safe_load(path.read_text())
    assert written["kd"] == {"train": {"lr": 0.02}, "kd": {"alpha": 0.5}} and written["ce"] == {}
    assert written["selection"] == {"kd": {"trial": 3, "val_acc": 98.0, "val_nll": 0.1}}
    raw = copy.deepcopy(base_raw)
    raw["tune"]["enabled"] = False
    off = parse_params(raw)
    assert tuned_params(off, "kd", path) == off


@pytest.mark.parametrize(("edit", "message"), [
    (lambda r: r["tune"]["own"].update(kd={"temperature": [1.0]}),
     "tune.own.kd.temperature: kd has no key 'temperature'"),
    (lambda r: r["data"].update(val_per_class=0), "tune.enabled needs a validation split"),
    (lambda r: r["tune"].update(trials=[0, 0]), "tune.trials: trials must be unique"),
    (lambda r: r["tune"]["shared"].update(momentum=[]), "tune.shared.momentum: list should"),
    (lambda r: r["tune"].update(methods=["ce", "mixup"]), "tune.methods: unknown method 'mixup'"),
    (lambda r: r["tune"].update(methods=["ce", "kd"]), "tune.methods: 'kd' distils the teacher"),
    (lambda r: r["tune"].update(teacher_methods=["ce"]),
     "tune.teacher_methods: 'ce' needs no teacher"),
    (lambda r: r["tune"]["own"].pop("ce"), "tune.own.ce: missing; every tuned method needs"),
    (lambda r: r["baselines"].update(methods=["ce", "kd"]),
     "baselines.methods: 'kd' distils the teacher: KD is trained once per seed as "
     "kd_ablation@full-<seed>"),
    (lambda r: r["introspective_ablation"].update(variants=["full", "target_only"]),
     "introspective_ablation.variants: unknown introspective variant 'target_only'"),
])
def test_bad_tune_params(base_raw, edit, message):
    raw = copy.deepcopy(base_raw)
    edit(raw)
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    assert message in str(info.value)


def test_tuning_off_still_writes_the_stage_outputs(tmp_path, base_raw, monkeypatch):
    """tune.enabled: false trains nothing, yet DVC needs every declared output of
    tune@<method>-<trial>: the trial record (marked skipped) and the (empty) models folder."""
    import json

    from stages.tune import trial

    raw = copy.deepcopy(base_raw)
    raw["tune"]["enabled"] = False
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    for index in raw["tune"]["trials"]:
        trial("ce", index)
    records = sorted((tmp_path / "results/tune/ce").glob("trial-*/trial.json"))
    assert [json.loads(r.read_text())["skipped"] for r in records] == [True] * 3
    for index in raw["tune"]["trials"]:
        models = tmp_path / f"models/tune/ce/trial-{index}"
        assert models.is_dir() and not any(models.iterdir())


@pytest.mark.parametrize(("method", "index", "message"), [
    ("nope", 0, "method 'nope' is not in tune.methods"),
    ("ce", 7, "trial 7 is not in tune.trials [0, 1, 2]")])
def test_a_trial_outside_the_plan_is_refused(tmp_path, base_raw, monkeypatch, method, index,
                                             message):
    from stages.tune import trial

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base_raw))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        trial(method, index)
    assert not (tmp_path / "results").exists()


def test_a_grid_may_hold_choices_and_integers_each_checked_against_its_section(base_raw):
    """IL's open choices (explainer, target mode, warm-up epochs) are tunable like numbers:
    the space is their product with the shared knobs, and a trial's params carry the chosen
    string or integer; a value its section would refuse fails when params load."""
    raw = copy.deepcopy(base_raw)
    raw["tune"]["own"]["introspective"] = {"explainer": ["gradcam", "input_gradient"],
                                           "target_mode": ["fixed_gt", "softmax"],
                                           "warmup_epochs": [0, 2]}
    params = parse_params(raw)
    space = search_space(params, "introspective")
    assert len(space) == 9 * 2 * 2 * 2
    chosen = [apply(params, c).introspective for c in space]
    assert {(c.explainer, c.target_mode, c.warmup_epochs) for c in chosen} == {
        (e, m, w) for e in ("gradcam", "input_gradient") for m in ("fixed_gt", "softmax")
        for w in (0, 2)}
    for key, bad, why in (("explainer", "gradcamm", "Input should be 'gradcam'"),
                          ("warmup_epochs", 1.5, "valid integer"),
                          ("gt_prob", 1.2, "less than 1")):
        raw["tune"]["own"]["introspective"] = {key: [bad]}
        with pytest.raises(ConfigError, match=re.escape(
                f"tune.own.introspective.{key}: {bad!r} is not a value of "
                f"introspective.{key} (") + ".*" + re.escape(why)):
            parse_params(raw)


def test_tuning_off_writes_every_declared_tuned_output_and_trains_nothing(tmp_path, base_raw,
                                                                         monkeypatch):
    """tune.enabled: false has no tuned rows, so tuned@<method>-<seed> must not train the
    default recipe again (it would repeat baselines@ce bit for bit); each file the DVC stage
    declares (read from dag/tuned/dvc.yaml) says why, and a stale trained run is replaced."""
    import json

    import stages.train

    from ..helpers import REPO

    declared = yaml.safe_load((REPO / "dag/tuned/dvc.yaml").read_text())["stages"]["tuned"]
    paths = [*declared["outs"], *declared["metrics"], *(next(iter(p)) for p in declared["plots"])]
    paths = [p.replace("${item.method}", "ce").replace("${item.seed}", "0") for p in paths]
    raw = copy.deepcopy(base_raw)
    raw["tune"]["enabled"] = False
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    stale = tmp_path / "models/tuned/ce-0/model.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier tuned run")

    def refuse(*_):
        raise AssertionError("tuning is off: nothing may train")
    monkeypatch.setattr(stages.train, "run", refuse)
    stages.train.entry(["tuned", "--method", "ce", "--seed", "0"])
    for path in paths:
        assert (tmp_path / path).exists(), path
    assert not stale.exists()
    for name in ("metrics.json", "reliability.json", "mlflow_run.json"):
        note = json.loads((tmp_path / "results/tuned/ce-0" / name).read_text())
        assert note["trained"] is False and "tune.enabled" in note["why"]
    assert (tmp_path / "results/tuned/ce-0/history.csv").read_text().splitlines() == [
        "epoch,test_acc"]
    assert (tmp_path / "results/tuned/ce-0/curves.png").read_bytes()[:4] == b"\x89PNG"
