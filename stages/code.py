"""DVC stages ``code_<script>``: the manifest of the code ``python -m stages.<script>`` runs.

    python -m stages.code train     # -> dag/code/train.json

The training, tuning and surface instances depend on their script's manifest instead of
listing its ~40 files each (``pipeline.core.code.manifest`` says why).
"""

from __future__ import annotations

import argparse

from pipeline.core.cli import main
from pipeline.core.code import BASE, manifest, manifest_path
from pipeline.core.io import atomic_write_json


def entry() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("script", help="a stage script in stages/: train, tune, surface")
    args = parser.parse_args()
    atomic_write_json(BASE / manifest_path(args.script), manifest(args.script))


if __name__ == "__main__":
    main(entry)
