"""Names and folders of stage instances: the one place that spells ``results/<stage>/<instance>``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# stages that always train one method; the others name it (``--method``)
STAGE_METHOD = {"teacher": "ce", "kd_ablation": "kd", "introspective": "introspective"}
VARIANT_STAGES = ("kd_ablation", "introspective")  # instances named by variant, not method


@dataclass(frozen=True)
class RunSpec:
    """One training run: ``kd_ablation@full-0`` is ``RunSpec("kd_ablation", "kd", "full", 0)``."""

    stage: str
    method: str
    variant: str = "full"
    seed: int = 0
    group: str = ""  # tune: one folder per trial, holding a run per tuning seed; teacher:
    # "shared" (a fixed split's one teacher) or "tuning" (a tuning seed's); surface: a
    # point of the grid (:func:`surface_point`) or "reference"

    @classmethod
    def of(cls, stage: str, name: str, seed: int) -> RunSpec:
        """The run of a table row: ``name`` is a variant in variant stages, else a method."""
        if stage in VARIANT_STAGES:
            return cls(stage, STAGE_METHOD[stage], name, seed)
        return cls(stage, name, "full", seed)

    @property
    def name(self) -> str:
        """The table row's name: the variant in variant stages, else the method."""
        return self.variant if self.stage in VARIANT_STAGES else self.method

    @property
    def instance(self) -> str:
        if self.stage == "teacher":  # teacher@<seed>, or in group "shared" / "tuning"
            return f"seed-{self.seed}"
        return f"{self.name}-{self.seed}"

    @property
    def group_name(self) -> str:
        """The runs that differ only by seed (one MLflow parent): ``tune@kd/trial-2/kd``."""
        return f"{self.stage}@{self.group + '/' if self.group else ''}{self.name}"

    @property
    def relative(self) -> Path:
        """``<stage>/[<group>/]<instance>``, below ``results/``, ``models/`` or ``checkpoints/``."""
        return Path(self.stage, self.group, self.instance)

    def folder(self, kind: str = "results") -> Path:
        return Path(kind) / self.relative

    @property
    def run_name(self) -> str:
        """The MLflow run name, e.g. ``tune@kd/trial-2/kd-100``."""
        if not self.instance:
            return self.stage
        return f"{self.stage}@{self.group + '/' if self.group else ''}{self.instance}"


SURFACE_REFERENCE = "reference"  # the surface's folder for its reference method's runs


def surface_point(x: object, y: object) -> str:
    """A surface point's folder and instance name, ``<x>-<y>``, as DVC names the matrix item
    ``surface@<x>-<y>`` (``str`` of each value: ``0.5``, ``gradcam``)."""
    return f"{x}-{y}"
