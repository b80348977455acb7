"""Registry of training methods: name -> factory reading its own params section.

Adding a method = one small module with a :class:`Method` subclass + one entry
here + a params section; the engine never learns method names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..config import Params
from .base import Method, StepOutput
from .ce import CE
from .confidence_penalty import ConfidencePenalty
from .dml import DML
from .introspective import Introspective
from .kd import KD
from .label_smoothing import LabelSmoothing
from .tf_kd import TFKDVirtual

ModelFactory = Callable[[], nn.Module]


@dataclass(frozen=True)
class Entry:
    build: Callable[[Params, ModelFactory, nn.Module | None, str], Method]
    teacher: str = "none"  # "required" (KD), "optional" (IL: only for its similarity report)

    @property
    def needs_teacher(self) -> bool:
        return self.teacher == "required"


REGISTRY: dict[str, Entry] = {
    "ce": Entry(lambda p, make, t, v: CE(make())),
    "label_smoothing": Entry(lambda p, make, t, v: LabelSmoothing(make(),
                                                                  p.label_smoothing.epsilon)),
    "confidence_penalty": Entry(lambda p, make, t, v: ConfidencePenalty(
        make(), p.confidence_penalty.beta)),
    "tf_kd_virtual": Entry(lambda p, make, t, v: TFKDVirtual(
        make(), p.tf_kd_virtual.alpha, p.tf_kd_virtual.T, p.tf_kd_virtual.correct_prob)),
    "kd": Entry(lambda p, make, t, v: KD(make(), t, p.kd.alpha, p.kd.T, v), teacher="required"),
    "dml": Entry(lambda p, make, t, v: DML(make(), make(), p.dml.alpha, p.dml.form)),
    "introspective": Entry(lambda p, make, t, v: Introspective(make(), p.introspective, v, t),
                           teacher="optional"),
}


def build_method(name: str, params: Params, make_model: ModelFactory,
                 teacher: nn.Module | None = None, variant: str = "full") -> Method:
    if name not in REGISTRY:
        raise KeyError(f"unknown method '{name}' (known: {', '.join(REGISTRY)})")
    entry = REGISTRY[name]
    if entry.needs_teacher and teacher is None:
        raise ValueError(f"method '{name}' needs a teacher")
    return entry.build(params, make_model, teacher, variant)


__all__ = ["REGISTRY", "Method", "StepOutput", "build_method"]
