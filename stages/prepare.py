"""DVC stage ``prepare``: build the configured dataset into ``data/prepared``."""

from __future__ import annotations

from pipeline.core.cli import main
from pipeline.core.config import load_params
from pipeline.core.paths import PREPARED_DIR
from pipeline.prepare.datasets import prepare


def entry() -> None:
    params = load_params()
    meta = prepare(params.data, PREPARED_DIR)
    sizes = ", ".join(f"{k} {v}" for k, v in meta["sizes"].items())
    print(f"[ilkd] prepared {meta['dataset']}: {len(meta['classes'])} classes, "
          f"images {tuple(meta['shape'])}, {sizes}")


if __name__ == "__main__":
    main(entry)
