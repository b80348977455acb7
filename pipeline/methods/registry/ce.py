"""CE: its params section (``ce:`` in params.yaml) and registry entry.

Its loss is ``pipeline/methods/ce.py``.
"""

from __future__ import annotations

from pipeline.core.schema import Section
from pipeline.methods import MethodInfo


class CEConfig(Section):
    """Plain cross-entropy has no knobs; the section exists so every method has one."""


METHOD = MethodInfo("ce", "CE", CEConfig, label="CE", rank=0, claim="CE", paper="better")
