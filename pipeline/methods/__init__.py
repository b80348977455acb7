"""The method registry: every training method, each declared by its own files.

A method is its loss, ``pipeline/methods/<name>.py`` (a
:class:`~pipeline.methods.base.Method` subclass with ``from_config`` and ``step``), and
its entry, ``pipeline/methods/registry/<name>.py``: its params section (a ``Section``)
and one ``METHOD = MethodInfo(...)`` line that names the loss class and the section and
says how the tables and claims call it. The entries import no torch, so validating params
stays fast. The registry keeps every module of ``registry/`` that declares ``METHOD``:
adding a method edits no shared file, so the stage instances that exist keep their
dependencies and nothing is retrained (``tests/integration/test_dvc_repro.py`` adds a toy
method to check exactly that).

Everything else reads the registry: params validation (each method's section, which names
a list may hold), the stages (which method an instance trains, whether it needs the
teacher), dvc.yaml's per-method dependencies (``pipeline/methods/<name>.py`` and the params
section ``<name>``), the tables (row labels and order) and the claims (IL's comparisons).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from pipeline.core.config import Params
    from pipeline.core.schema import Section
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
VARIANT_NOTES = {  # what each variant is, on its MLflow run page
    "full": "", "uniform_non_gt": "control: uniform non-GT mass (class similarity removed)",
    "shuffled_non_gt": "control: shuffled non-GT mass (class similarity destroyed)",
    "target_only": "target-class part only (TCKD)",
    "non_target_only": "non-target part only (NCKD)"}
PAPER = ("better", "similar", "")  # IL vs a method: the paper says IL is better, similar, or
# nothing (beyond the paper: reported and decided, no claim of the paper rides on it)


@dataclass(frozen=True)
class MethodInfo:
    """One training method: its loss and section, and how the tables and claims call it."""

    name: str  # its modules (<name>.py, registry/<name>.py) and its params section
    cls: str  # the loss class in pipeline/methods/<name>.py (imported when built)
    config: type[Section]
    label: str  # T2/T3 row label
    rank: int  # where its rows stand in the tables (and its claim among the claims)
    short: str = ""  # prefix of its variant rows (T1: "KD uniform non-GT")
    teacher: Teacher = Teacher.NONE
    variants: tuple[str, ...] = ("full",)
    table: str = "T2"  # T2 (regularizers, self-distillation) or T3 (peers, teachers)
    claim: str = ""  # its name in IL's claims ("IL > LS"); "" = IL is not compared with it
    paper: str = ""  # what the paper says of IL vs it: one of PAPER

    def variant_label(self, variant: str) -> str:
        return f"{self.short or self.label} {VARIANT_LABELS[variant]}"

    def load(self) -> type[Method]:
        return getattr(importlib.import_module(f"{__name__}.{self.name}"), self.cls)


class Registry(Mapping[str, MethodInfo]):
    """The methods ``registry/`` declares, by name, in table order; found on first use."""

    def __init__(self) -> None:
        self._found: dict[str, MethodInfo] | None = None

    def _methods(self) -> dict[str, MethodInfo]:
        if self._found is None:
            found = []
            entries = importlib.import_module(f"{__name__}.registry")
            for module in pkgutil.iter_modules(entries.__path__):
                info = getattr(importlib.import_module(f"{entries.__name__}.{module.name}"),
                               "METHOD", None)
                if info is None:
                    continue
                if info.name != module.name:
                    raise ValueError(f"pipeline/methods/registry/{module.name}.py: METHOD is "
                                     f"named '{info.name}'; a method's name is its module's")
                found.append(info)
            self._found = {m.name: m for m in sorted(found, key=lambda m: (m.rank, m.name))}
        return self._found

    def __getitem__(self, name: str) -> MethodInfo:
        return self._methods()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._methods())

    def __len__(self) -> int:
        return len(self._methods())


REGISTRY = Registry()


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


__all__ = ["KD_VARIANTS", "NON_GT_VARIANTS", "PAPER", "REGISTRY", "VARIANT_LABELS",
           "VARIANT_NOTES", "MethodInfo", "Registry", "Teacher", "build_method", "method_info"]
