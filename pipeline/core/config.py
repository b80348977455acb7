"""Typed, validated view of ``params.yaml``.

Every knob lives in one nested YAML file (DVC tracks its keys per stage). We
validate the whole file before any work starts, so a typo in a section a stage
does not read still fails fast. pydantic does the type/range checking; this
module only turns its errors into one line per problem that names the key.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from pipeline.core.archs import check_arch
from pipeline.core.errors import ConfigError
from pipeline.core.schema import (
    NonEmptyFloats,
    NonNegFloat,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    Probability,
    Section,
    UnitFloat,
)
from pipeline.methods import REGISTRY, Teacher

DatasetName = Literal["digits", "synthetic", "cifar10", "cifar100", "imagefolder"]


def _unique(what: str):
    """A list validator: every entry once (a repeated seed would double-count a run)."""
    def check(value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"{what} must be unique")
        return value
    return check


def _methods(teacher: Teacher, hint: str):
    """Validator of a list of method names against the registry (``pipeline/methods``)."""
    def check(names: list[str]) -> list[str]:
        for name in names:
            if name not in REGISTRY:
                raise ValueError(f"unknown method '{name}' (known: {', '.join(REGISTRY)})")
            if REGISTRY[name].teacher is not teacher:
                raise ValueError(f"'{name}' {hint}")
        return _unique("methods")(names)
    return check


def _variants(method: str):
    def check(names: list[str]) -> list[str]:
        known = REGISTRY[method].variants
        for name in names:
            if name not in known:
                raise ValueError(f"unknown {method} variant '{name}' (known: {', '.join(known)})")
        return _unique("variants")(names)
    return check


TeacherFreeMethods = Annotated[list[str], Field(min_length=1), AfterValidator(_methods(
    Teacher.NONE, "distils the teacher: KD is trained once per seed as kd_ablation@full-<seed> "
    "(read by T1 and T3) and tuned through tune.teacher_methods"))]


class SyntheticConfig(Section):
    """Procedural images whose class-similarity structure is known (groups of classes)."""

    num_classes: Annotated[int, Field(ge=2)] = 10
    group_size: PositiveInt = 2
    image_size: Annotated[int, Field(ge=4)] = 12
    train_per_class: PositiveInt = 100
    test_per_class: PositiveInt = 50
    class_strength: UnitFloat = 0.3
    noise: NonNegFloat = 0.8
    seed: int = 0


class DataConfig(Section):
    name: DatasetName = "digits"
    root: str = "data/raw"
    image_size: PositiveInt | None = None
    channels: Literal[1, 3] = 3
    test_fraction: Probability = 0.25
    train_per_class: PositiveInt | None = None
    val_per_class: NonNegInt = 10
    # an int: one validation split and training subset for every run; "per_seed": each
    # seed draws its own (the pairs of a claim stay paired; docs/claims.md)
    split_seed: int | Literal["per_seed"] = 0
    synthetic: SyntheticConfig = SyntheticConfig()

    @property
    def per_seed(self) -> bool:
        return self.split_seed == "per_seed"

    @model_validator(mode="after")
    def _per_seed_draws_something(self) -> DataConfig:
        if self.per_seed and not (self.train_per_class or self.val_per_class):
            raise ValueError("data.split_seed: per_seed draws each seed's training subset "
                             "and validation split; set data.train_per_class and/or "
                             "data.val_per_class (with neither, every seed sees the same data)")
        return self


class ModelConfig(Section):
    arch: str
    width: PositiveFloat  # no default: the teacher's and the student's differ

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        check_arch(value)
        return value


class ScheduleConfig(Section):
    name: Literal["multistep", "cosine", "constant"] = "cosine"
    milestones: list[Annotated[float, Field(gt=0, lt=1)]] = [0.5, 0.75]
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1


class AugmentConfig(Section):
    crop_padding: NonNegInt = 1
    flip: bool = False


class TrainConfig(Section):
    epochs: PositiveInt
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 0.05
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    weight_decay: NonNegFloat = 5e-4
    schedule: ScheduleConfig = ScheduleConfig()
    augment: AugmentConfig = AugmentConfig()
    eval_batch_size: PositiveInt = 1024
    eval_every: PositiveInt = 1  # evaluate val/test every k epochs and after the last one


class RuntimeConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: PositiveInt | None = 1
    deterministic: bool = True
    progress: bool = True
    # fast path: autocast dtype (auto = bf16 on a CUDA device that has it, else off),
    # channels_last memory format, torch.compile of every model's convolutional trunk
    amp: Literal["off", "auto", "bf16", "fp16"] = "off"
    channels_last: bool = True
    compile: bool = False
    # prepared for CUDA graphs, off until a GPU measures them (docs/gpu.md): one batch shape
    # per epoch (the last partial batch dropped; the order is reshuffled every epoch), and
    # torch.compile's mode ("reduce-overhead" captures CUDA graphs; needs static_shapes)
    static_shapes: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"

    @field_validator("amp", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false

    @model_validator(mode="after")
    def _compile_mode_needs_compile(self) -> RuntimeConfig:
        if self.compile_mode != "default" and not self.compile:
            raise ValueError(f"runtime.compile_mode: {self.compile_mode} needs runtime.compile: "
                             "true")
        if self.compile_mode == "reduce-overhead" and not self.static_shapes:
            raise ValueError("runtime.compile_mode: reduce-overhead (CUDA graphs) needs "
                             "runtime.static_shapes: true (one graph per batch shape)")
        return self


class TeacherConfig(Section):
    model: ModelConfig
    train: TrainConfig
    seed: int = 0


class StudentConfig(Section):
    model: ModelConfig
    train: TrainConfig


class KDAblationConfig(Section):
    variants: Annotated[list[str], Field(min_length=1), AfterValidator(_variants("kd"))] = [
        "full", "uniform_non_gt", "shuffled_non_gt", "target_only", "non_target_only"
    ]


class BaselinesConfig(Section):
    methods: TeacherFreeMethods  # no default: params.yaml lists them


class IntrospectiveAblationConfig(Section):
    """T4's variants, apart from IL's knobs: adding one retrains only the new instances."""

    variants: Annotated[list[str], Field(min_length=1),
                        AfterValidator(_variants("introspective"))] = [
        "full", "uniform_non_gt", "shuffled_non_gt"
    ]


class TuneConfig(Section):
    """Equal-budget tuning on the validation split (see ``pipeline.train.tune``)."""

    enabled: bool = True
    seeds: Annotated[list[int], Field(min_length=1), AfterValidator(_unique("seeds"))] = [100]
    trials: Annotated[list[NonNegInt], Field(min_length=1),
                      AfterValidator(_unique("trials"))] = [0, 1, 2]
    sample_seed: int = 0
    methods: TeacherFreeMethods  # no default: params.yaml lists them
    # methods that distil the teacher: their tuning stages (tune_with_teacher@M,
    # tuned_with_teacher@M-S) are the only ones that depend on models/teacher
    teacher_methods: Annotated[list[str], AfterValidator(_methods(
        Teacher.REQUIRED, "needs no teacher: list it under tune.methods"))] = ["kd"]
    shared: dict[Literal["lr", "weight_decay", "momentum"], NonEmptyFloats] = {
        "lr": [0.02, 0.05, 0.1], "weight_decay": [1e-4, 5e-4, 1e-3]}
    # one entry per tuned method ({} = shared knobs only): DVC tracks tune.own.<method>
    # per method, so editing one method's grid reruns only that method's tuning
    # a knob's grid holds values of its own type: numbers, and choices such as IL's
    # explainer or target_mode (each value is checked against the method's section)
    own: dict[str, dict[str, Annotated[list[bool | int | float | str | None],
                                       Field(min_length=1)]]]

    @property
    def all_methods(self) -> list[str]:
        return [*self.methods, *self.teacher_methods]


Knob = float | int | str  # a surface value: a number, or a choice such as an explainer


class SurfaceConfig(Section):
    """A method's response surface (``pipeline/train/surface.py``): validation accuracy over
    two keys of its section on a grid, every other key at its tuned recipe, beside the
    reference method's tuned recipe on the same seeds (docs/claims.md)."""

    enabled: bool = True
    method: str = "introspective"
    knobs: Annotated[list[str], Field(min_length=2, max_length=2),
                     AfterValidator(_unique("knobs"))] = ["alpha", "gt_prob"]
    x: Annotated[list[Knob], Field(min_length=1)] = [0.3, 0.7]  # values of knobs[0]
    y: Annotated[list[Knob], Field(min_length=1)] = [0.8, 0.95]  # values of knobs[1]
    # keys set at every point, e.g. target_mode: fixed_gt where the grid varies gt_prob
    fixed: dict[str, Knob] = {"target_mode": "fixed_gt"}
    seeds: Annotated[list[int], Field(min_length=1), AfterValidator(_unique("seeds"))] = [
        100, 101]
    reference: str = "ce"

    @field_validator("x", "y")
    @classmethod
    def _distinct(cls, value: list[Knob]) -> list[Knob]:
        if len({str(v) for v in value}) != len(value):
            raise ValueError("values must be distinct (each names a stage instance)")
        return value


def _ascending(value: list[int]) -> list[int]:
    if value != sorted(set(value)):
        raise ValueError("looks must be increasing seed counts, e.g. [5, 10, 20]")
    return value


class ClaimsConfig(Section):
    """How the claims table decides (``pipeline/results/decide.py``, docs/claims.md)."""

    margin: PositiveFloat = 1.0  # smallest top-1 difference of interest, in points
    level: Probability = 0.95  # confidence of the verdicts, over all planned looks
    # the seed counts at which the table is read (`make decide`); each look's intervals
    # use level 1 - (1 - level) / K for K looks (Bonferroni), so looking again as
    # planned keeps the overall false-positive rate at 1 - level
    looks: Annotated[list[PositiveInt], Field(min_length=1), AfterValidator(_ascending)] = [3]


class SharedParams(Section):
    """The sections every method shares; :data:`Params` adds one section per method,
    each declared by its registry entry (``pipeline/methods/registry/<name>.py``)."""

    profile: str = "quick"
    seeds: Annotated[list[int], Field(min_length=1), AfterValidator(_unique("seeds"))]
    data: DataConfig = DataConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    teacher: TeacherConfig
    student: StudentConfig
    kd_ablation: KDAblationConfig = KDAblationConfig()
    baselines: BaselinesConfig
    introspective_ablation: IntrospectiveAblationConfig = IntrospectiveAblationConfig()
    tune: TuneConfig
    surface: SurfaceConfig = SurfaceConfig()
    claims: ClaimsConfig = ClaimsConfig()

    @model_validator(mode="after")
    def _tunable_keys_exist(self) -> SharedParams:
        for method, knobs in self.tune.own.items():
            if method not in REGISTRY:
                raise ValueError(f"tune.own.{method}: unknown method "
                                 f"(known: {', '.join(REGISTRY)})")
            section = getattr(self, method)
            for key, values in knobs.items():
                if key not in type(section).model_fields:
                    raise ValueError(f"tune.own.{method}.{key}: {method} has no key '{key}'")
                for value in values:
                    try:
                        type(section).model_validate({**section.model_dump(), key: value})
                    except ValidationError as exc:
                        reason = exc.errors()[0]["msg"]
                        raise ValueError(f"tune.own.{method}.{key}: {value!r} is not a value "
                                         f"of {method}.{key} ({reason})") from None
        if self.tune.enabled:
            for method in self.tune.all_methods:
                if method not in self.tune.own:
                    raise ValueError(f"tune.own.{method}: missing; every tuned method needs an "
                                     "entry (use {} for the shared knobs only)")
        if self.tune.enabled and self.data.val_per_class == 0:
            raise ValueError("tune.enabled needs a validation split: set data.val_per_class > 0 "
                             "(or tune.enabled: false)")
        return self

    @model_validator(mode="after")
    def _surface_fits_its_methods(self) -> SharedParams:
        """The surface's instances depend on no teacher, and every key it sets is a valid
        value of the method's section."""
        s = self.surface
        for role, method in (("method", s.method), ("reference", s.reference)):
            if method not in REGISTRY:
                raise ValueError(f"surface.{role}: unknown method '{method}' "
                                 f"(known: {', '.join(REGISTRY)})")
            if REGISTRY[method].teacher is not Teacher.NONE:
                raise ValueError(f"surface.{role}: '{method}' distils the teacher; the surface "
                                 "trains teacher-free methods only")
        section = getattr(self, s.method)
        fields = type(section).model_fields
        settings = [(f"surface.{axis}", key, values)
                    for axis, key, values in (("x", s.knobs[0], s.x), ("y", s.knobs[1], s.y))]
        settings += [(f"surface.fixed.{k}", k, [v]) for k, v in s.fixed.items()]
        for where, key, values in settings:
            if key not in fields:
                raise ValueError(f"{where}: {s.method} has no key '{key}' "
                                 f"(its keys: {', '.join(fields)})")
            if key in s.fixed and where != f"surface.fixed.{key}":
                raise ValueError(f"surface.fixed.{key}: '{key}' is a knob of the grid")
            for value in values:
                try:
                    type(section).model_validate({**section.model_dump(), key: value})
                except ValidationError as exc:
                    raise ValueError(f"{where}: {value!r} is not a value of {s.method}.{key} "
                                     f"({exc.errors()[0]['msg']})") from None
        return self

    @model_validator(mode="after")
    def _fast_path_fits_the_explainer(self) -> SharedParams:
        """Input-space explainers backpropagate to the image once per class: through an
        inductor-compiled trunk that batched backward is a known failure on CUDA, and in
        fp16 without loss scaling the input gradients underflow."""
        explainer = self.introspective.explainer
        if explainer == "gradcam":
            return self
        if self.runtime.compile:
            raise ValueError(f"runtime.compile: true does not combine with introspective."
                             f"explainer: {explainer} (batched input gradients through a "
                             "compiled trunk); use explainer: gradcam or compile: false")
        if self.runtime.amp == "fp16":
            raise ValueError(f"runtime.amp: fp16 underflows introspective.explainer: {explainer}'s "
                             "input gradients; use amp: bf16 (fp32's range) or off")
        return self


def _assemble() -> type[SharedParams]:
    """The whole ``params.yaml``: the shared sections and, for every registered method, its
    own section (its registry entry's ``Section``) under its name."""
    sections: dict[str, Any] = {name: (info.config, info.config())
                                for name, info in REGISTRY.items()}
    return create_model("Params", __base__=SharedParams, __module__=__name__, **sections)


if TYPE_CHECKING:
    Params = SharedParams  # type checkers see the shared sections; methods' are dynamic
else:
    Params = _assemble()


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _section_at(model, error["loc"][:-1])
        hint = ""
        if parent is not None:
            close = difflib.get_close_matches(str(error["loc"][-1]), parent.model_fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{loc}: unknown key{hint}"
    if kind == "missing":
        return f"{loc}: required key is missing"
    message = error["msg"]
    message = message[0].lower() + message[1:]
    message = message.removeprefix("value error, ")
    if not loc:  # whole-file checks name their keys themselves
        return message
    return f"{loc}: {message}, got {error.get('input')!r}"


def _section_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return None
        if not issubclass(field.annotation, BaseModel):
            return None
        model = field.annotation
    return model


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate a nested dict; raise :class:`ConfigError` with one line per problem."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(e, Params) for e in exc.errors()]
        raise ConfigError("\n".join(f"{source}: {line}" for line in lines)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_params(raw, str(path))


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-able config pieces (tags, checkpoint matching)."""
    blob = json.dumps(
        [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in parts],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (MLflow params are flat)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
