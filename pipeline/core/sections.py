"""The sections of ``params.yaml`` that every method shares, each a validated pydantic model.

A method's own section lives with its method (``pipeline/methods/registry/<name>.py``);
:mod:`pipeline.core.config` assembles these and the methods' sections into ``Params`` and
checks what spans sections.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from pipeline.core.archs import check_arch
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


def unique(what: str):
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
        return unique("methods")(names)
    return check


def _variants(method: str):
    def check(names: list[str]) -> list[str]:
        known = REGISTRY[method].variants
        for name in names:
            if name not in known:
                raise ValueError(f"unknown {method} variant '{name}' (known: {', '.join(known)})")
        return unique("variants")(names)
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
    seeds: Annotated[list[int], Field(min_length=1), AfterValidator(unique("seeds"))] = [100]
    trials: Annotated[list[NonNegInt], Field(min_length=1),
                      AfterValidator(unique("trials"))] = [0, 1, 2]
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
                     AfterValidator(unique("knobs"))] = ["alpha", "gt_prob"]
    x: Annotated[list[Knob], Field(min_length=1)] = [0.3, 0.7]  # values of knobs[0]
    y: Annotated[list[Knob], Field(min_length=1)] = [0.8, 0.95]  # values of knobs[1]
    # keys set at every point, e.g. target_mode: fixed_gt where the grid varies gt_prob
    fixed: dict[str, Knob] = {"target_mode": "fixed_gt"}
    seeds: Annotated[list[int], Field(min_length=1), AfterValidator(unique("seeds"))] = [
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
