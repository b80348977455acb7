"""Switch the active profile: ``presets/<name>.yaml`` laid over ``presets/quick.yaml``.

    python -m pipeline.tools.presets list
    python -m pipeline.tools.presets show cifar10-cpu         # the params it would write
    python -m pipeline.tools.presets use paper-cifar10        # what `make preset P=...` runs

``quick.yaml`` is the full base (the default ``params.yaml``); every other preset is an
overlay holding only what it changes, so a reader sees the difference and a new key is
added once. Mappings merge key by key; a scalar or list replaces the base's. The merged
result is validated first, keeps the base's comments, and replaces ``params.yaml``
atomically, so DVC sees an ordinary params change and reruns exactly what it touches.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from pipeline.core.cli import main as cli_main
from pipeline.core.config import Params, parse_params
from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_text
from pipeline.core.paths import PARAMS, PRESETS
from pipeline.core.presets import BASE, available, load_preset, merge

__all__ = ["BASE", "PRESETS", "available", "load_preset", "render", "use"]

def _flow_list(value: list) -> Any:
    """A list ruamel writes as ``[a, b]``, as the base writes lists."""
    from ruamel.yaml.comments import CommentedSeq

    seq = CommentedSeq(value)
    seq.fa.set_flow_style()
    return seq


def _header_length(lines: list[str]) -> int:
    """How many leading lines are comments (a preset's description)."""
    return next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))


def _render(name: str, folder: Path) -> tuple[str, Params]:
    from ruamel.yaml import YAML  # round-trip YAML keeps the base's comments (comes with DVC)

    source = folder / f"{name}.yaml"
    if not source.is_file():
        raise ConfigError(f"{source}: no such preset (available: {', '.join(available(folder))})")
    base_text = (folder / f"{BASE}.yaml").read_text()
    if name == BASE:
        text = base_text
    else:
        overlay_text = source.read_text()
        overlay_lines, base_lines = overlay_text.splitlines(), base_text.splitlines()
        header = overlay_lines[:_header_length(overlay_lines)]
        body = "\n".join(base_lines[_header_length(base_lines):])
        yaml = YAML()
        yaml.width, yaml.preserve_quotes = 4096, True
        yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar(
            "tag:yaml.org,2002:null", "null"))
        merged = yaml.load(body)
        overlay = YAML(typ="safe").load(overlay_text) or {}
        if not isinstance(overlay, dict):
            raise ConfigError(f"{source}: a preset is a mapping of params keys")
        merge(merged, overlay, "", _flow_list)
        out = io.StringIO()
        yaml.dump(merged, out)
        text = "\n".join(header) + "\n" + out.getvalue()
    import yaml as pyyaml

    return text, parse_params(pyyaml.safe_load(text), str(source))


def render(name: str, folder: Path = PRESETS) -> str:
    """The full params text of preset ``name`` (validated): its header comment, then
    base + overlay."""
    return _render(name, folder)[0]


def use(name: str, target: Path = PARAMS, folder: Path = PRESETS) -> None:
    text = render(name, folder)
    atomic_write_text(target, text)
    print(f"[ilkd] {target} <- {folder / f'{name}.yaml'} over {BASE}.yaml; "
          "run `dvc repro` (or `make estimate` first)")


def entry(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["use"] and len(args) == 2:
        use(args[1])
    elif args[:1] == ["show"] and len(args) == 2:
        print(render(args[1]), end="")
    elif args[:1] == ["list"]:
        print("\n".join(available()))
    else:
        raise ConfigError("usage: python -m pipeline.tools.presets list | show <name> | use <name>")


if __name__ == "__main__":
    cli_main(entry)
