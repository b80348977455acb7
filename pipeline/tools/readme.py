"""Copy the generated tables into README.md between two markers (never typed by hand).

    python -m pipeline.tools.readme        # after `dvc repro`; `make readme` does both
"""

from __future__ import annotations

import sys
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"


def splice(readme: str, block: str) -> str:
    if START not in readme or END not in readme:
        raise ValueError(f"README.md lacks the markers {START} / {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block.strip()}\n{END}{tail}"


def main(readme: Path = Path("README.md"),
         tables: Path = Path("results/tables/all_tables.md")) -> None:
    if not tables.is_file():
        sys.exit(f"error: {tables} not found; run `dvc repro` first")
    readme.write_text(splice(readme.read_text(), tables.read_text()))
    print(f"[ilkd] {readme}: results section updated from {tables}")


if __name__ == "__main__":
    main()
