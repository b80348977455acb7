"""DVC stages ``surface@<x>-<y>`` and ``surface_reference``: a method's response surface.

    python -m stages.surface --method introspective --x 0.5 --y 0.9
    python -m stages.surface --method ce --reference

One instance per point of the grid, so parallel workers share the points; each trains one
run per surface seed (:mod:`pipeline.train.surface`), checkpointed.
"""

from __future__ import annotations

import argparse

from pipeline.core.cli import main
from pipeline.core.config import load_params
from pipeline.core.errors import ConfigError
from pipeline.train.surface import train_point, train_reference


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True,
                        help="surface.method (a point) or surface.reference (--reference)")
    parser.add_argument("--x", help="a value of surface.x, as DVC writes it")
    parser.add_argument("--y", help="a value of surface.y, as DVC writes it")
    parser.add_argument("--reference", action="store_true",
                        help="train the reference method on the surface seeds")
    args = parser.parse_args(argv)
    params = load_params()
    s = params.surface
    expected = s.reference if args.reference else s.method
    if args.method != expected:
        role = "reference" if args.reference else "method"
        raise ConfigError(f"surface: --method {args.method} is not surface.{role} ({expected})")
    if args.reference:
        train_reference(params)
        return
    if args.x is None or args.y is None:
        raise ConfigError("surface: a point needs --x and --y (or --reference)")
    train_point(params, args.x, args.y)


if __name__ == "__main__":
    main(entry)
