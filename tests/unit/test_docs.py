"""The README and docs/: every relative link and anchor resolves, every `make` target they
name exists, and the README stays a five-minute read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ..helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces to '-') and
    explicit ``<a id="...">`` ones."""
    found = set(re.findall(r'<a id="([^"]+)"', page.read_text()))
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        title = re.sub(r"[^\w\- ]", "", title.replace("`", ""))
        found.add(title.replace(" ", "-"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_every_make_target_the_docs_name_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, flags=re.M))
    named = {t for page in PAGES for t in re.findall(r"`make ([\w-]+)", page.read_text())}
    assert named, "the docs name no make target"
    assert not named - targets, f"named but not in the Makefile: {named - targets}"


def test_the_readme_is_short_and_has_exactly_two_setup_commands():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    block = text.split("## Two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in block.strip().splitlines()] == [
        ["make", "repro"], ["make", "test"]]
