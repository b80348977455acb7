"""The method registry: the one place that names every training method.

Everything else reads it: params validation (which names a list may hold),
the stages (which method a stage instance trains, whether it needs the
teacher), dvc.yaml's per-method dependencies (``pipeline/methods/<name>.py``
and the params section ``<name>``) and the tables (row labels).

Adding a method = one module ``pipeline/methods/<name>.py`` whose
:class:`~pipeline.methods.base.Method` subclass has ``from_config``, one entry
below, and its params section (``<name>:`` in ``params.yaml`` and a section
class in ``pipeline/core/config.py``). This module imports no torch: method modules
are imported only when a method is built, so validating params stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from pipeline.core.config import Params
    from pipeline.methods.base import Method


class Teacher(Enum):
    """Whether a method distils a trained teacher (then its stages depend on ``models/teacher``)."""

    NONE = "none"
    REQUIRED = "required"


# the T1/T4 controls: keep the true-class probability, change only the non-GT part
NON_GT_VARIANTS = ("full", "uniform_non_gt", "shuffled_non_gt")
KD_VARIANTS = (*NON_GT_VARIANTS, "target_only", "non_target_only")
VARIANT_LABELS = {"full": "(full)", "uniform_non_gt": "uniform non-GT",
                  "shuffled_non_gt": "shuffled non-GT", "target_only": "target only (TCKD)",
                  "non_target_only": "non-target only (NCKD)"}


@dataclass(frozen=True)
class MethodInfo:
    """One training method: where its code lives and how the tables call it."""

    name: str  # also its module (pipeline/methods/<name>.py) and its params section
    cls: str  # class name in that module
    label: str  # T2/T3 row label
    short: str = ""  # prefix of its variant rows (T1: "KD uniform non-GT")
    teacher: Teacher = Teacher.NONE
    variants: tuple[str, ...] = ("full",)
    table: str = "T2"  # T2 (regularizers, self-distillation) or T3 (peers, teachers)

    def variant_label(self, variant: str) -> str:
        return f"{self.short or self.label} {VARIANT_LABELS[variant]}"

    def load(self) -> type[Method]:
        return getattr(importlib.import_module(f"{__name__}.{self.name}"), self.cls)


_METHODS = (
    MethodInfo("ce", "CE", "CE"),
    MethodInfo("label_smoothing", "LabelSmoothing", "label smoothing"),
    MethodInfo("confidence_penalty", "ConfidencePenalty", "confidence penalty"),
    MethodInfo("tf_kd_virtual", "TFKDVirtual", "teacher-free KD (virtual teacher)"),
    MethodInfo("ps_kd", "PSKD", "PS-KD (self-distillation)"),
    MethodInfo("cs_kd", "CSKD", "CS-KD (class-wise self-distillation)"),
    MethodInfo("online_label_smoothing", "OnlineLabelSmoothing", "online label smoothing"),
    MethodInfo("dml", "DML", "DML (2 peers)", table="T3"),
    MethodInfo("kd", "KD", "KD from a teacher", "KD", Teacher.REQUIRED, KD_VARIANTS, "T3"),
    MethodInfo("introspective", "Introspective", "IL", "IL", variants=NON_GT_VARIANTS),
)
REGISTRY: dict[str, MethodInfo] = {m.name: m for m in _METHODS}


def method_info(name: str) -> MethodInfo:
    if name not in REGISTRY:
        raise KeyError(f"unknown method '{name}' (known: {', '.join(REGISTRY)})")
    return REGISTRY[name]


def build_method(name: str, params: Params, make_model: Callable[[], nn.Module],
                 teacher: nn.Module | None = None, variant: str = "full") -> Method:
    """The method ``name`` built from its own params section (``params.<name>``)."""
    info = method_info(name)
    if info.teacher is Teacher.REQUIRED and teacher is None:
        raise ValueError(f"method '{name}' needs a teacher")
    if variant not in info.variants:
        raise ValueError(f"unknown {name} variant '{variant}' (known: {', '.join(info.variants)})")
    section: Any = getattr(params, name)
    return info.load().from_config(section, make_model, teacher, variant)


__all__ = ["KD_VARIANTS", "NON_GT_VARIANTS", "REGISTRY", "MethodInfo", "Teacher",
           "build_method", "method_info"]
