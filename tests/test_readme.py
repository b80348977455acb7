from __future__ import annotations

import pytest

from pipeline.tools.readme import END, START, splice


def test_splice_replaces_only_the_marked_block():
    text = f"intro\n{START}\nold table\n{END}\noutro\n"
    assert splice(text, "| new |\n") == f"intro\n{START}\n| new |\n{END}\noutro\n"


def test_splice_needs_markers():
    with pytest.raises(ValueError, match="markers"):
        splice("no markers", "x")
