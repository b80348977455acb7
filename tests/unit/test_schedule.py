"""The wall-time estimate's scheduler against schedules worked out by hand."""

from __future__ import annotations

import pytest

from pipeline.orchestrate.schedule import Task, critical_path, makespan


def test_independent_tasks_fill_the_workers():
    tasks = [Task("a", 3), Task("b", 2), Task("c", 2)]
    # a on worker 1 (0-3); b on worker 2 (0-2), then c (2-4)
    assert makespan(tasks, 2) == 4
    assert makespan(tasks, 1) == 7
    assert makespan(tasks, 3) == 3


def test_the_longest_remaining_path_goes_first():
    # teacher 5 -> kd 5; two free runs of 4. Critical path first: teacher and f1 at 0,
    # f2 at 4 (ends 8), kd at 5 (ends 10). Free runs first would end at 4 + 5 + 5 = 14.
    tasks = [Task("f1", 4), Task("f2", 4), Task("teacher", 5), Task("kd", 5, ("teacher",))]
    assert critical_path(tasks) == {"f1": 4, "f2": 4, "teacher": 10, "kd": 5}
    assert makespan(tasks, 2) == 10


def test_a_join_waits_for_all_its_parents():
    tasks = [Task("t1", 1), Task("t2", 3), Task("select", 0, ("t1", "t2")),
             Task("r1", 2, ("select",)), Task("r2", 2, ("select",))]
    assert makespan(tasks, 2) == 5  # select at 3; r1 and r2 side by side
    assert makespan(tasks, 1) == 8


def test_bad_graphs_are_refused():
    with pytest.raises(ValueError, match="unknown tasks"):
        makespan([Task("a", 1, ("ghost",))], 1)
    with pytest.raises(ValueError, match="cycle"):
        makespan([Task("a", 1, ("b",)), Task("b", 1, ("a",))], 1)
    with pytest.raises(ValueError, match="workers"):
        makespan([Task("a", 1)], 0)


def test_the_estimate_orders_the_dag(base_raw):
    from pipeline.core.config import parse_params
    from pipeline.tools.estimate import dag_tasks, plan

    params = parse_params(base_raw, "t")
    # what the estimate measured: a (role, method, explainer) it did not measure is a KeyError
    measured = {("teacher", "ce", ""): 10.0} | {("student", m, how): 1.0
                                                for _, m, how, _, _ in plan(params)}
    tasks = dag_tasks(params, lambda *key: measured[key])
    by_name = {t.name: t for t in tasks}
    # as many training tasks as plan() counts runs (a tune instance holds a run per
    # tuning seed, a surface instance one per surface seed), plus the teacher instances
    # that copy the fixed split's shared one
    stages = [t for t in tasks if t.name != "tune_select"]
    copies = len(params.seeds) + len(params.tune.seeds)
    surface = params.surface
    assert len(stages) == sum(r for s, _, _, r, _ in plan(params) if s not in ("tune", "surface")
                              ) + len(params.tune.all_methods) * len(params.tune.trials) + (
        len(surface.x) * len(surface.y) + 1) + copies
    assert by_name["surface@0.3-0.8"].after == ("tune_select",)
    assert by_name["surface@0.3-0.8"].seconds == len(surface.seeds) * params.student.train.epochs
    assert by_name["shared_teacher"].seconds == 10.0 * params.teacher.train.epochs
    assert by_name["teacher@0"].seconds == 0 and by_name["teacher@0"].after == (
        "shared_teacher",)
    assert by_name["kd_ablation@full-0"].after == ("teacher@0",)
    assert by_name["tuned_with_teacher@kd-1"].after == ("tune_select", "teacher@1")
    trials = params.tune.trials
    assert set(by_name["tune_select"].after) == {
        f"tune@{m}-{k}" for m in params.tune.methods for k in trials} | {
        f"tune_with_teacher@kd-{k}" for k in trials}
    assert by_name["tune_with_teacher@kd-0"].after == ("tuning_teacher@100",)
    epochs = params.student.train.epochs
    assert by_name["tune@ce-1"].seconds == len(params.tune.seeds) * epochs  # 1 s per epoch


def test_per_seed_teachers_train_in_parallel_in_the_estimate(base_raw):
    """per_seed: each seed's teacher is its own task, so on as many workers as seeds the
    teachers run side by side and the critical path holds one teacher, not all of them."""
    import copy

    from pipeline.core.config import parse_params
    from pipeline.tools.estimate import dag_tasks

    raw = copy.deepcopy(base_raw)
    raw["data"].update(split_seed="per_seed", train_per_class=50)
    params = parse_params(raw, "t")
    tasks = dag_tasks(params, lambda role, *_: 10.0 if role == "teacher" else 1.0)
    teacher = 10.0 * params.teacher.train.epochs
    by_name = {t.name: t for t in tasks}
    assert [by_name[f"teacher@{s}"].seconds for s in params.seeds] == [teacher] * 3
    assert by_name["shared_teacher"].seconds == 0
    chain = 3 * teacher  # what one stage training the teachers one after another cost
    assert makespan(tasks, 64) < chain


def test_the_estimate_times_each_tuning_trial_with_the_explainer_it_draws(base_raw):
    """An input-gradient IL step costs several Grad-CAM steps; a tuning grid that draws both
    explainers must be timed per trial, not at the configured explainer (which the tuned
    decided run's estimate did, missing half its IL trials' cost)."""
    import copy

    from pipeline.core.config import parse_params
    from pipeline.tools.estimate import dag_tasks, plan
    from pipeline.train.tune import trial_config

    raw = copy.deepcopy(base_raw)
    raw["tune"]["own"]["introspective"] = {"explainer": ["gradcam", "input_gradient"],
                                          "alpha": [0.3, 0.5, 0.7]}
    raw["tune"]["trials"] = [0, 1, 2, 3, 4, 5]
    params = parse_params(raw, "t")
    drawn = {k: trial_config(params, "introspective", k)["introspective"]["explainer"]
             for k in params.tune.trials}
    assert set(drawn.values()) == {"gradcam", "input_gradient"}  # this grid draws both
    rows = {(s, m, how): r for s, m, how, r, _ in plan(params)}
    seeds = len(params.tune.seeds)
    for how in ("gradcam", "input_gradient"):
        assert rows[("tune", "introspective", how)] == seeds * sum(
            v == how for v in drawn.values())
    assert rows[("tune", "ce", "")] == seeds * len(params.tune.trials)
    # the configured explainer still times every other IL instance
    assert rows[("introspective", "introspective", params.introspective.explainer)] == (
        len(params.seeds) * len(params.introspective_ablation.variants))
    cost = {"gradcam": 1.0, "input_gradient": 7.0}
    tasks = {t.name: t for t in dag_tasks(
        params, lambda role, method, how: cost.get(how, 1.0) if role == "student" else 10.0)}
    epochs = params.student.train.epochs
    for k, how in drawn.items():
        assert tasks[f"tune@introspective-{k}"].seconds == seeds * epochs * cost[how]
