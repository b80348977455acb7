"""Presets validate, switch atomically, and the run/device-hour plan counts every run."""

from __future__ import annotations

import shutil

import pytest
import yaml

from pipeline.core.config import load_params
from pipeline.core.errors import ConfigError
from pipeline.tools.estimate import dataset_shape, plan, step_seconds
from pipeline.tools.presets import available, load_preset, render, use

from ..helpers import REPO


def preset(name):
    return load_preset(name, REPO / "presets")


@pytest.mark.parametrize("name", ["quick", "paper-cifar10", "paper-cifar100", "imagefolder",
                                  "cifar10-cpu", "cifar10-decide", "cifar10-tuned"])
def test_every_preset_is_valid(name):
    assert preset(name).profile == name


def test_a_preset_is_an_overlay_of_quick():
    """An overlay changes only what it names; everything else is the base's, comments too."""
    base = yaml.safe_load((REPO / "presets/quick.yaml").read_text())
    text = render("cifar10-cpu", REPO / "presets")
    merged = yaml.safe_load(text)
    assert merged["student"]["model"] == {"arch": "resnet8", "width": 0.5}
    assert merged["student"]["train"]["weight_decay"] == base["student"]["train"]["weight_decay"]
    assert merged["kd"] == base["kd"] and merged["tune"]["own"] == base["tune"]["own"]
    assert merged["tune"]["trials"] == [0, 1, 2]
    assert "# torch CPU threads" in text and text.startswith("# ilkd params: CIFAR-10")
    assert merged["runtime"]["amp"] == "off"  # the base's quoted "off" stays a string


def test_an_overlay_typo_names_the_key(tmp_path):
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "quick.yaml").write_text((REPO / "presets/quick.yaml").read_text())
    (folder / "mine.yaml").write_text("student:\n  train: {epoch: 3}\n")
    with pytest.raises(ConfigError, match=r"student\.train\.epoch: not a key"):
        render("mine", folder)


def test_a_tuning_grid_replaces_quicks_whole_and_is_still_validated(tmp_path):
    """A method's grid under tune.own holds that method's knobs, not quick's: a preset's
    grid replaces quick's (the pre-registered IL grid of cifar10-tuned), and a knob the
    method does not have is still refused when the params load."""
    grid = yaml.safe_load((REPO / "presets/cifar10-tuned.yaml").read_text())["tune"]["own"]
    merged = yaml.safe_load(render("cifar10-tuned", REPO / "presets"))
    assert merged["tune"]["own"]["introspective"] == grid["introspective"]
    assert preset("cifar10-tuned").tune.own["introspective"]["explainer"] == [
        "gradcam", "input_gradient"]
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "quick.yaml").write_text((REPO / "presets/quick.yaml").read_text())
    (folder / "mine.yaml").write_text("tune:\n  own:\n    introspective: {gt_probb: [0.9]}\n")
    with pytest.raises(ConfigError, match=r"tune\.own\.introspective\.gt_probb: introspective "
                                          r"has no key 'gt_probb'"):
        load_preset("mine", folder)


def test_quick_preset_is_the_default_params():
    assert (REPO / "presets/quick.yaml").read_text() == (REPO / "params.yaml").read_text()


def test_paper_presets_follow_the_design():
    for name, dataset in (("paper-cifar10", "cifar10"), ("paper-cifar100", "cifar100")):
        p = preset(name)
        train = p.student.train
        assert p.data.name == dataset and len(p.seeds) == 3
        assert (train.epochs, train.lr, train.momentum, train.weight_decay, train.batch_size) == \
            (200, 0.1, 0.9, 5e-4, 128)
        assert train.schedule.name == "multistep" and train.augment.flip
        assert (p.teacher.model.arch, p.student.model.arch) == ("resnet56", "resnet20")


def test_use_switches_and_rejects_unknown(tmp_path, monkeypatch):
    shutil.copytree(REPO / "presets", tmp_path / "presets")
    monkeypatch.chdir(tmp_path)
    assert "paper-cifar10" in available()
    use("paper-cifar10")
    assert load_params("params.yaml").profile == "paper-cifar10"
    with pytest.raises(ConfigError, match=r"presets/paper-svhn\.yaml: no such preset"):
        use("paper-svhn")
    (tmp_path / "presets/broken.yaml").write_text("profile: 3\n")
    with pytest.raises(ConfigError):
        use("broken")
    assert load_params("params.yaml").profile == "paper-cifar10"  # untouched on failure


def test_plan_counts_every_training_run():
    params = load_params(REPO / "params.yaml")
    rows = plan(params)
    runs = {stage: sum(r for s, _, _, r, _ in rows if s == stage) for stage, *_ in rows}
    seeds = len(params.seeds)
    # 8 teacher-free baselines: KD from a teacher is kd_ablation@full, counted once;
    # tuning: 10 methods x 3 trials x 1 tuning seed; the surface: 2 x 2 points and its
    # reference, 2 seeds each
    assert runs == {"teacher": 1, "baselines": 8 * seeds, "kd_ablation": 5 * seeds,
                    "introspective": 3 * seeds, "tune": 10 * 3 * 1, "tuned": 10 * seeds,
                    "surface": (2 * 2 + 1) * 2}
    n, classes, shape = dataset_shape(params)
    assert (n, classes, shape) == (1347 - 10 * 10, 10, (1, 8, 8))
    # the decided run: 4 baselines, 3 + 3 variants and a teacher per seed (per-seed subsets;
    # no tuning seeds: nothing tuned distils one); tuning is off, so tuned@ce trains nothing
    decide = preset("cifar10-decide")
    count = {s: sum(r for t, _, _, r, _ in plan(decide) if t == s) for s, *_ in plan(decide)}
    assert {s: r for s, r in count.items() if r} == {
        "teacher": 5, "baselines": 20, "kd_ablation": 15, "introspective": 15}
    # per-seed subsets: a teacher per reported and per tuning seed (3 + 1)
    per_seed = params.model_copy(update={"data": params.data.model_copy(
        update={"split_seed": "per_seed"})})
    assert sum(r for s, _, _, r, _ in plan(per_seed) if s == "teacher") == 4
    cifar = preset("paper-cifar100")
    assert dataset_shape(cifar) == (50_000 - 50 * 100, 100, (3, 32, 32))


def test_step_seconds_measures_a_real_step():
    import torch

    params = load_params(REPO / "params.yaml")
    seconds = step_seconds(params, "kd", 10, (1, 8, 8), 16, 1, torch.device("cpu"))
    assert 0 < seconds < 60


def test_estimate_times_the_profile_fast_path():
    """The estimator's step runs under the configured autocast and memory format."""
    import torch

    from pipeline.core.models import build_model
    from pipeline.methods.ce import CE
    from pipeline.tools.estimate import median_step_seconds
    from pipeline.train.engine import Accel, prepare_models

    seen = []
    model = build_model("resnet8", 10, 3)
    model.register_forward_hook(lambda m, i, o: seen.append(
        (o.dtype, i[0].is_contiguous(memory_format=torch.channels_last))))
    method = CE(model)
    accel = Accel(amp=torch.bfloat16, channels_last=True)
    prepare_models(method, torch.device("cpu"), accel)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    assert median_step_seconds(method, x, y, steps=1, warmup=0, accel=accel) > 0
    assert seen == [(torch.bfloat16, True)]


def test_the_plain_yaml_loader_gives_what_the_round_trip_writes():
    """load_preset (libyaml, what every run reads for its MLflow parent's name) and the
    comment-keeping round trip that writes params.yaml give equal params for every preset."""
    from pipeline.tools.presets import _render

    folder = REPO / "presets"
    for name in available(folder):
        assert load_preset(name, folder) == _render(name, folder)[1], name
