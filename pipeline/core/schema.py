"""What a params section is: a strict pydantic model, and the value types sections share.

Shared by ``pipeline/core/sections.py`` (the sections every method shares) and every
method's registry entry (``pipeline/methods/registry/<name>.py``), which declares the
method's own section; ``pipeline/core/config.py`` assembles them into ``Params``.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
UnitFloat = Annotated[float, Field(ge=0, le=1)]
Probability = Annotated[float, Field(gt=0, lt=1)]
NonEmptyFloats = Annotated[list[float], Field(min_length=1)]


class Section(BaseModel):
    """Strict section: unknown keys and silent type coercion are errors."""

    model_config = ConfigDict(extra="forbid", strict=True)
