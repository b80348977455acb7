from __future__ import annotations

import pytest

from pipeline.tools.readme import END, START, splice


def test_splice_replaces_only_the_marked_block():
    text = f"intro\n{START}\nold table\n{END}\noutro\n"
    assert splice(text, "| new |\n") == f"intro\n{START}\n| new |\n{END}\noutro\n"


def test_splice_needs_markers():
    with pytest.raises(ValueError, match="markers"):
        splice("no markers", "x")


def _report(folder, profile, acc):
    import json

    (folder / profile / "tables").mkdir(parents=True)
    (folder / profile / "tables" / "T2_regularizers.csv").write_text(
        "method,stage,name,seeds,test_acc_mean,test_nll_mean\n"
        f"CE,baselines,ce,3,{acc},0.5\nIL (full),introspective,full,3,61.0,0.45\n")
    (folder / profile / "all_tables.md").write_text(f"| CE | {acc} |\n")
    (folder / profile / "provenance.json").write_text(json.dumps({
        "commit": "0123456789abcdef", "dataset_sha256": "ab" * 32, "machine": "x86_64",
        "python": "3.11.7", "sizes": {"train": 3000, "val": 1000, "test": 10000}}))
    return folder / profile


def test_readme_splices_each_profile_into_its_own_block(tmp_path):
    from pipeline.tools.readme import BLOCKS, CLAIMS, main

    _report(tmp_path / "reports", "quick", 98.5)
    _report(tmp_path / "reports", "cifar10-cpu", 55.25)
    decided, tuned = list(CLAIMS)  # the README's claims tables: default and tuned recipes
    header = "| claim | recipe | Δ |\n|---|---|---|\n"
    for profile, acc, rows in ((decided, 47.5, "| IL > CE | default | x |\n"),
                               (tuned, 48.25, "| IL > CE | default | y0 |\n| IL > CE | tuned | y |\n")):
        (_report(tmp_path / "reports", profile, acc) / "all_tables.md").write_text(
            f"| CE | {acc} |\n\n**Claims — paired**\n\n{header}{rows}\nrules\n\n"
            "**IL's class similarity vs the teacher's**\n\n| full | 0.8 |\n")
    start, end = BLOCKS["cifar10-cpu"]
    results = tmp_path / "results.md"
    results.write_text(f"a\n{START}\nold\n{END}\nb\n{start}\nold\n{end}\nc\n"
                       + "".join(f"{BLOCKS[p][0]}\nold\n{BLOCKS[p][1]}\n" for p in CLAIMS))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n" + "".join(f"{a}\nold\n{b}\nmid\n" for a, b, _ in CLAIMS.values()))
    main(readme, tmp_path / "reports", results)
    text = results.read_text()
    quick, cifar = text.split(START)[1].split(END)[0], text.split(start)[1].split(end)[0]
    assert "| CE | 98.5 |" in quick and "55.25" not in quick
    assert "| CE | 55.25 |" in cifar and "commit `0123456789`" in cifar
    assert "3000 train / 1000 val / 10000 test" in cifar
    for profile, acc in ((decided, "47.5"), (tuned, "48.25")):
        assert f"| CE | {acc} |" in text.split(BLOCKS[profile][0])[1].split(BLOCKS[profile][1])[0]
    readme_text = readme.read_text()
    # the decided run's table whole; the tuned run's with its tuned rows only
    for profile, row, others in ((decided, "| IL > CE | default | x |", ("y0", "y |")),
                                 (tuned, "| IL > CE | tuned | y |", ("x |", "y0"))):
        a, b, _ = CLAIMS[profile]
        claims = readme_text.split(a)[1].split(b)[0]
        assert row in claims and "rules" in claims and header in claims
        assert not any(o in claims for o in others)
        assert "class similarity" not in claims and "| CE |" not in claims
    assert readme_text.count("mid\n") == 2 and readme_text.startswith("intro\n")


def test_provenance_line_says_what_a_per_seed_run_trained_on_and_its_cpu_kernels(tmp_path):
    """A per_seed report prepared the whole pool: the line must give the per-class draw, not
    the pool as if it were the training set; the CPU kernel set is named when recorded."""
    import json

    from pipeline.tools.readme import block

    folder = _report(tmp_path / "reports", "cifar10-decide", 47.5)
    assert "3000 train / 1000 val / 10000 test images; x86_64 CPU, Python" in block(folder)
    (folder / "params.yaml").write_text(
        "data: {train_per_class: 300, val_per_class: 100, split_seed: per_seed}\n")
    prov = json.loads((folder / "provenance.json").read_text())
    prov.update(sizes={"train": 50000, "val": 0, "test": 10000}, cpu="Test CPU",
                cpu_capability="AVX2")
    (folder / "provenance.json").write_text(json.dumps(prov))
    line = block(folder).splitlines()[0]
    assert ("per seed, 300 train / 100 val images per class drawn from the 50000-image "
            "training pool; 10000 test images; x86_64 CPU (Test CPU, torch AVX2 kernels)") in line


def test_the_ladder_block_holds_its_figure_and_verdicts(tmp_path):
    from pipeline.tools.readme import LADDER, main

    reports = tmp_path / "reports"
    (reports / "ladder").mkdir(parents=True)
    (reports / "ladder" / "verdicts.md").write_text("### The regime ladder\n\n| rung |\n")
    results, readme = tmp_path / "results.md", tmp_path / "README.md"
    results.write_text(f"a\n{LADDER[0]}\nSTALE\n{LADDER[1]}\nb\n")
    readme.write_text("intro\n")
    main(readme, reports, results)
    block = results.read_text().split(LADDER[0])[1].split(LADDER[1])[0]
    assert f"![The regime ladder](../{reports}/ladder/ladder.png)" in block
    assert "| rung |" in block and "STALE" not in block
    assert readme.read_text() == "intro\n"  # no claims report: the README is left alone
