"""Params validation: every bad input fails with a line that names the key."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml

from pipeline.core.config import fingerprint, flatten, load_params, parse_params
from pipeline.core.errors import ConfigError

from ..helpers import REPO


def test_repo_params_are_valid():
    params = load_params(REPO / "params.yaml")
    assert params.data.name == "digits"
    assert params.profile == "quick"
    assert len(params.seeds) >= 2


def _set(raw: dict, dotted: str, value) -> dict:
    raw = copy.deepcopy(raw)
    node = raw
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


_DELETE = object()

BAD = [
    ("student.train.lr", -0.1, "student.train.lr: input should be greater than 0, got -0.1"),
    ("student.train.lr", "0.1", "student.train.lr: input should be a valid number"),
    ("student.train.epochs", 2.5, "student.train.epochs: input should be a valid integer"),
    ("student.train.lrr", 0.1, "student.train.lrr: unknown key (did you mean 'lr'?)"),
    ("data.name", "mnist", "data.name: input should be 'digits', 'synthetic'"),
    ("teacher.model.arch", "resnet19", "teacher.model.arch: unknown architecture 'resnet19'"),
    ("kd.alpha", 1.5, "kd.alpha: input should be less than or equal to 1, got 1.5"),
    ("kd.T", -1.0, "kd.T: input should be greater than 0, got -1.0"),
    ("kd.T", 0, "kd.T: input should be greater than 0, got 0"),
    ("seeds", [], "seeds: list should have at least 1 item"),
    ("seeds", [0, 0], "seeds: seeds must be unique"),
    ("kd_ablation.variants", ["full", "uniform"], "kd_ablation.variants: unknown kd variant 'uniform'"),
    ("baselines.methods", ["ce", "mixup"], "baselines.methods: unknown method 'mixup'"),
    ("runtime.deterministic", "yes", "runtime.deterministic: input should be a valid boolean"),
    ("label_smoothing.epsilon", 1.0, "label_smoothing.epsilon: input should be less than 1"),
    ("introspective.explainer", "lime", "introspective.explainer: input should be 'gradcam'"),
    ("student.train", _DELETE, "student.train: required key is missing"),
    ("dml.form", "sum", "dml.form: input should be 'convex' or 'original'"),
    ("data.val_per_class", -1, "data.val_per_class: input should be greater than or equal to 0"),
    ("runtime.amp", "fp8", "runtime.amp: input should be 'off', 'auto', 'bf16' or 'fp16'"),
    ("runtime.amp", True, "runtime.amp: input should be 'off', 'auto', 'bf16' or 'fp16'"),
    ("runtime.channels_last", "yes", "runtime.channels_last: input should be a valid boolean"),
    ("kd.temperature", 2.0, "kd.temperature: unknown key"),
    ("introspective.alpha", -0.1, "introspective.alpha: input should be greater than or equal"),
    ("introspective.tau", 0.0, "introspective.tau: input should be greater than 0"),
    ("student.model.arch", "resnet9", "student.model.arch: unknown architecture 'resnet9'"),
    ("ps_kd.alpha_T", 1.5, "ps_kd.alpha_T: input should be less than or equal to 1"),
    ("cs_kd.T", 0.0, "cs_kd.T: input should be greater than 0"),
    ("tf_kd_virtual.soften_teacher", False, "tf_kd_virtual: T: 4.0 with soften_teacher: false"),
    ("student.train.eval_every", 0, "student.train.eval_every: input should be greater than 0"),
]


@pytest.mark.parametrize(("key", "value", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_value_names_the_key(base_raw, key, value, expected):
    with pytest.raises(ConfigError) as info:
        parse_params(_set(base_raw, key, value))
    assert expected in str(info.value)
    assert str(info.value).startswith("params.yaml: ")


def test_bare_yaml_off_means_amp_off(base_raw):
    raw = yaml.safe_load(yaml.safe_dump(base_raw).replace("amp: 'off'", "amp: off"))
    assert raw["runtime"]["amp"] is False  # what YAML 1.1 makes of a bare `off`
    assert parse_params(raw).runtime.amp == "off"


def test_unknown_top_level_section(base_raw):
    raw = dict(base_raw, techer={"seed": 1})
    with pytest.raises(ConfigError, match=r"techer: unknown key \(did you mean 'teacher'\?\)"):
        parse_params(raw)


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_params([1, 2])


def test_cli_exits_2_with_one_line(tmp_path, base_raw):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_set(base_raw, "data.name", "mnist")))
    proc = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=tmp_path,
                          capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: params.yaml: data.name:")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()


def test_flatten_and_fingerprint():
    assert flatten({"a": {"b": 1, "c": {"d": 2}}, "e": 3}) == {"a.b": 1, "a.c.d": 2, "e": 3}
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


@pytest.mark.parametrize(("runtime", "explainer", "expected"), [
    ({"compile": True}, "input_gradient", "runtime.compile: true does not combine with "
                                          "introspective.explainer: input_gradient"),
    ({"compile": True}, "gradient_x_input", "explainer: gradient_x_input"),
    ({"amp": "fp16"}, "input_gradient", "runtime.amp: fp16 underflows"),
])
def test_fast_path_settings_an_input_space_explainer_cannot_use(base_raw, runtime, explainer,
                                                               expected):
    raw = _set(base_raw, "introspective.explainer", explainer)
    raw["runtime"].update(runtime)
    with pytest.raises(ConfigError, match=expected):
        parse_params(raw)
    raw["introspective"]["explainer"] = "gradcam"  # Grad-CAM reads the forward's feature map
    assert parse_params(raw).introspective.explainer == "gradcam"


@pytest.mark.parametrize(("runtime", "expected"), [
    ({"compile_mode": "max-autotune"}, "runtime.compile_mode: max-autotune needs runtime.compile"),
    ({"compile": True, "compile_mode": "reduce-overhead"},
     "compile_mode: reduce-overhead (CUDA graphs) needs runtime.static_shapes: true"),
])
def test_cuda_graph_settings_come_together(base_raw, runtime, expected):
    raw = copy.deepcopy(base_raw)
    raw["runtime"].update(runtime)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_params(raw)
    raw["runtime"].update(compile=True, static_shapes=True)
    assert parse_params(raw).runtime.compile_mode == runtime["compile_mode"]


def _defaults(model) -> dict:
    """Every key of a params section that has a schema default, as ``{dotted: value}``
    (sections without a default of their own are walked into)."""
    from pydantic import BaseModel
    from pydantic_core import PydanticUndefined

    found = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.update({f"{name}.{k}": v for k, v in _defaults(annotation).items()})
        elif field.default is not PydanticUndefined:
            found[name] = field.default
    return found


def test_every_schema_default_is_the_value_params_yaml_sets():
    """A default has one home: where the schema has one, params.yaml (and so the quick
    preset every preset overlays) sets the same value, and every schema key is in it."""
    from pipeline.core.config import Params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    defaults = _defaults(Params)
    assert len(defaults) > 50 and "tune.shared" in defaults  # the walk reached every level
    missing, differ = [], {}
    for key, default in defaults.items():
        node = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(key)  # the schema's value would be taken silently
                break
            node = node[part]
        else:
            if node != default:
                differ[key] = (default, node)
    assert not differ, f"schema default != params.yaml: {differ}"
    assert not missing, missing
