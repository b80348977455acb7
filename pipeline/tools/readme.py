"""Copy the committed tables into the docs and the README between markers (never typed).

    python -m pipeline.tools.readme        # `make readme`: dvc repro, report, then this

Each profile that has a ``reports/<profile>/`` folder (``python -m pipeline.tools.report``)
fills its own block of ``docs/results.md``: the quick profile's smoke tables, and for the
CIFAR-10 profiles (the decided runs, every table on a CPU) their results on real images, with
their main figures and where their numbers come from. The README gets the decided runs'
claims tables (``CLAIMS``): the project's answer, at the default and at the tuned recipes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from pipeline.core.paths import README, REPORTS, RESULTS_DOC

START, END = "<!-- results:start -->", "<!-- results:end -->"
# profile -> markers in docs/results.md; the quick profile keeps the original ones
BLOCKS = {"quick": (START, END),
          "cifar10-decide": ("<!-- cifar10-decide:start -->", "<!-- cifar10-decide:end -->"),
          "cifar10-tuned": ("<!-- cifar10-tuned:start -->", "<!-- cifar10-tuned:end -->"),
          "cifar10-cpu": ("<!-- cifar10-cpu:start -->", "<!-- cifar10-cpu:end -->")}
# the README's claims tables: the runs made to decide them (profile -> README.md's markers,
# and the recipe whose rows it shows: the tuned run's default rows repeat the decided run's)
CLAIMS = {"cifar10-decide": ("<!-- claims:start -->", "<!-- claims:end -->", None),
          "cifar10-tuned": ("<!-- claims-tuned:start -->", "<!-- claims-tuned:end -->", "tuned")}
# the regime ladder (`make ladder` writes reports/ladder/): its figure and verdicts
LADDER = ("<!-- ladder:start -->", "<!-- ladder:end -->")
FIGURES = (("T2_regularizers_accuracy.png", "T2: regularizers and self-distillation"),
           ("T1_kd_components_accuracy.png", "T1: KD components"),
           ("T4_introspective_components_accuracy.png", "T4: IL components"),
           ("similarity_il_vs_teacher.png", "IL's class similarity vs the teacher's"),
           ("surface.png", "IL's response surface"))


def splice(readme: str, block: str, start: str = START, end: str = END) -> str:
    if start not in readme or end not in readme:
        raise ValueError(f"README.md lacks the markers {start} / {end}")
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block.strip()}\n{end}{tail}"


def _sizes(folder: Path, sizes: dict) -> str:
    """The images a run trained on: the prepared split, or with ``data.split_seed: per_seed``
    the per-class counts each seed draws from the prepared pool."""
    params = folder / "params.yaml"
    data = yaml.safe_load(params.read_text()).get("data", {}) if params.is_file() else {}
    if data.get("split_seed") == "per_seed":
        return (f"per seed, {data.get('train_per_class')} train / {data.get('val_per_class')} "
                f"val images per class drawn from the {sizes['train']}-image training pool; "
                f"{sizes['test']} test images")
    return f"{sizes['train']} train / {sizes['val']} val / {sizes['test']} test images"


def _machine(prov: dict) -> str:
    if prov.get("cpu_capability"):  # recorded since reports name torch's CPU kernels
        return f"{prov['machine']} CPU ({prov['cpu']}, torch {prov['cpu_capability']} kernels)"
    return f"{prov['machine']} CPU"


def block(folder: Path, link: str = "") -> str:
    """The tables of one report, preceded (beyond the quick profile) by provenance and
    figures; ``link`` prefixes the figures' paths (``../`` from ``docs/``)."""
    text = (folder / "all_tables.md").read_text()
    if folder.name == "quick":
        return text
    prov = json.loads((folder / "provenance.json").read_text())
    lines = [f"Generated from `{folder}/` (commit `{prov['commit'][:10]}`, dataset sha256 "
             f"`{prov['dataset_sha256'][:12]}`: {_sizes(folder, prov['sizes'])}; "
             f"{_machine(prov)}, Python {prov['python']}).", ""]
    figures = [(name, title) for name, title in FIGURES if (folder / "figures" / name).is_file()]
    if figures:
        lines += [" ".join(f"![{title}]({link}{folder}/figures/{name})"
                           for name, title in figures), ""]
    surface = folder / "tables" / "surface.md"  # the response surface, where one was run
    return "\n".join(lines) + text + ("\n" + surface.read_text() if surface.is_file() else "")


def claims_table(folder: Path, recipe: str | None = None) -> str:
    """The claims section of a report's ``all_tables.md``: its table and the rules under it;
    with ``recipe``, only that recipe's rows (the table's second column)."""
    text = (folder / "all_tables.md").read_text()
    if "**Claims" not in text:
        raise ValueError(f"{folder}/all_tables.md has no claims table")
    claims = text[text.index("**Claims"):]
    end = claims.find("\n**", 2)  # the next section (IL's class similarity)
    claims = claims if end < 0 else claims[:end + 1]
    if recipe is None:
        return claims
    lines = claims.splitlines(keepends=True)
    rows = [i for i, line in enumerate(lines) if line.startswith("| ")][1:]  # past the header
    return "".join(line for i, line in enumerate(lines)
                   if i not in rows or line.split("|")[2].strip() == recipe)


def main(readme: Path = README, reports: Path = REPORTS,
         results: Path = RESULTS_DOC) -> None:
    text, done = results.read_text(), []
    for profile, (start, end) in BLOCKS.items():
        folder = reports / profile
        if (folder / "all_tables.md").is_file():
            text = splice(text, block(folder, "../"), start, end)
            done.append(str(folder))
    ladder = reports / "ladder" / "verdicts.md"
    if ladder.is_file():
        figure = f"![The regime ladder](../{reports}/ladder/ladder.png)\n\n"
        text = splice(text, figure + ladder.read_text(), *LADDER)
        done.append(str(ladder.parent))
    if not done:
        sys.exit(f"error: no {reports}/<profile>/all_tables.md; run `make readme` "
                 "(dvc repro, then python -m pipeline.tools.report)")
    results.write_text(text)
    readme_text = readme.read_text()
    for profile, (start, end, recipe) in CLAIMS.items():
        if (reports / profile / "all_tables.md").is_file():
            readme_text = splice(readme_text, claims_table(reports / profile, recipe), start, end)
    readme.write_text(readme_text)
    print(f"[ilkd] {results} and {readme}: results updated from {', '.join(done)}")


if __name__ == "__main__":
    main()
