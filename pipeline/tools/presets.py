"""Switch the active profile: ``presets/<name>.yaml`` becomes ``params.yaml``.

    python -m pipeline.tools.presets list
    python -m pipeline.tools.presets use paper-cifar10      # what `make preset P=...` runs

The preset is validated first; ``params.yaml`` is replaced atomically, so DVC
sees an ordinary params change and reruns exactly what it touches.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.core.cli import main as cli_main
from pipeline.core.config import load_params
from pipeline.core.errors import ConfigError
from pipeline.core.io import atomic_write_text

PRESETS = Path("presets")


def available() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def use(name: str, target: Path = Path("params.yaml")) -> None:
    source = PRESETS / f"{name}.yaml"
    if not source.is_file():
        raise ConfigError(f"{source}: no such preset (available: {', '.join(available())})")
    params = load_params(source)
    atomic_write_text(target, source.read_text())
    print(f"[ilkd] {target} <- {source} (profile {params.profile}, dataset {params.data.name}); "
          "run `dvc repro` (or `make estimate` first)")


def entry(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["use"] and len(args) == 2:
        use(args[1])
    elif args[:1] == ["list"]:
        print("\n".join(available()))
    else:
        raise ConfigError("usage: python -m pipeline.tools.presets list | use <name>")


if __name__ == "__main__":
    cli_main(entry)
