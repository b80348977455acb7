"""The regime ladder: rows and verdicts read from each rung's report, and the words that
say whether a verdict moved (an undecided rung is not a move)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from pipeline.core.errors import ConfigError
from pipeline.results.ladder import claim_verdicts, rung_rows, teacher_accuracy
from pipeline.tools.ladder import entry, movement, write

COLUMNS = ["method", "stage", "name", "seeds", "test_acc_mean", "d_acc_vs_ce", "d_acc_ci_low",
           "d_acc_ci_high", "verdict"]


def _report(root, name, per_class, ce_acc, il, verdict, teacher=None):
    folder = root / name
    (folder / "tables").mkdir(parents=True)
    if teacher is not None:
        (folder / "tables" / "teacher.md").write_text(
            f"Teacher: test top-1 {teacher}% (mean of 5 per-seed teachers); CE student: "
            f"{ce_acc}% (mean of 5 seeds).\n")
    (folder / "params.yaml").write_text(yaml.safe_dump({"data": {"train_per_class": per_class}}))
    t2 = pd.DataFrame([["CE", "baselines", "ce", 5, ce_acc, 0.0, 0.0, 0.0, "reference"],
                       ["label smoothing", "baselines", "label_smoothing", 5, ce_acc + 1, 1.0,
                        0.2, 1.8, "better"],
                       ["PS-KD", "baselines", "ps_kd", 5, ce_acc, 0.0, -1, 1, "undecided"],
                       ["IL", "introspective", "full", 5, ce_acc + il, il, il - 1, il + 1,
                        verdict]], columns=COLUMNS)
    t4 = pd.DataFrame([["CE", "baselines", "ce", 5, ce_acc, 0.0, 0.0, 0.0, "reference"],
                       ["IL (full)", "introspective", "full", 5, ce_acc + il, il, il - 1,
                        il + 1, verdict]], columns=COLUMNS)
    t2.to_csv(folder / "tables" / "T2_regularizers.csv", index=False)
    t4.to_csv(folder / "tables" / "T4_introspective_components.csv", index=False)
    pd.DataFrame([{"claim": "IL > CE", "recipe": "default", "paired_seeds": 5, "d_acc": il,
                   "d_acc_ci_low": il - 1, "d_acc_ci_high": il + 1, "verdict": verdict},
                  {"claim": "IL > CE", "recipe": "tuned", "paired_seeds": 5, "d_acc": 9.0,
                   "d_acc_ci_low": 8.0, "d_acc_ci_high": 10.0, "verdict": "A > B"}]
                 ).to_csv(folder / "tables" / "claims.csv", index=False)
    return folder


def test_a_rung_is_its_ce_accuracy_and_its_core_rows(tmp_path):
    rows = rung_rows(_report(tmp_path, "r100", 100, 30.0, -0.5, "undecided", teacher=41.25))
    assert list(rows["name"]) == ["label_smoothing", "full"]  # PS-KD is not a core row
    assert set(rows["ce_acc"]) == {30.0} and set(rows["train_per_class"]) == {100}
    assert set(rows["teacher_acc"]) == {41.25}
    il = rows[rows["name"] == "full"].iloc[0]
    assert il["method"] == "IL" and (il["d_acc_ci_low"], il["d_acc_ci_high"]) == (-1.5, 0.5)


def test_a_rung_s_teacher_comes_from_its_teacher_line_or_an_older_report_s_first_line(
        tmp_path):
    old = _report(tmp_path, "old", 300, 45.0, 0.1, "undecided")
    (old / "all_tables.md").write_text("Teacher: test top-1 60.91% (mean of 20 per-seed "
                                       "teachers); CE student: 44.98%.\n\n**T1 ...**\n")
    assert teacher_accuracy(old) == 60.91
    (old / "all_tables.md").write_text("**T2 ...** Teacher: test top-1 99.00%\n")
    assert teacher_accuracy(old) is None  # only the opening line names the teacher
    (old / "all_tables.md").write_text("**Warning: the teacher is not better than its "
                                       "student.** Teacher: test top-1 31.5%; CE student\n")
    assert teacher_accuracy(old) == 31.5
    assert teacher_accuracy(_report(tmp_path, "none", 100, 30.0, 0.0, "undecided")) is None


def test_verdicts_per_rung_keep_the_default_recipe(tmp_path):
    reports = [_report(tmp_path, "a", 100, 30.0, -0.5, "undecided"),
               _report(tmp_path, "b", 300, 45.0, 0.1, "equivalent (±1)")]
    table = claim_verdicts(reports)
    assert table.loc["IL > CE", "a"] == "undecided (-0.50 [-1.50, +0.50], n=5)"
    assert table.loc["IL > CE", "b"].startswith("equivalent (±1) (+0.10")


@pytest.mark.parametrize(("cells", "expected"), [
    ({"a": "A > B (+1 [..], n=5)", "b": "A > B (+2 [..], n=5)"}, "A > B at every rung"),
    ({"a": "undecided (+1 [..], n=5)", "b": "equivalent (±1) (+0 [..], n=5)"},
     "equivalent (±1) where decided (b); undecided at a"),
    ({"a": "A > B (+1 [..], n=5)", "b": "A < B (-1 [..], n=5)"}, "moves: A > B (a) → A < B (b)"),
    ({"a": "A > B, ≥ 1 (+3 [..], n=20)", "b": "A > B (+2 [..], n=5)", "c": "undecided (+1 [..])"},
     "no move: compatible verdicts A > B, ≥ 1 (a), A > B (b); undecided at c"),
    ({"a": "equivalent (±1) (-0.0 [..], n=5)", "b": "A < B (-0.8 [..], n=5)"},
     "no move: compatible verdicts equivalent (±1) (a), A < B (b)"),  # a Δ in (-1, 0)
    ({"a": "A > B, ≥ 1 (+3 [..], n=20)", "b": "equivalent (±1) (+0 [..], n=5)"},
     "moves: A > B, ≥ 1 (a) → equivalent (±1) (b)"),  # no Δ is both > 1 and < 1
    ({"a": "equivalent (±0.5) (+0 [..], n=5)", "b": "A > B, ≥ 0.5 (+2 [..], n=5)"},
     "moves: equivalent (±0.5) (a) → A > B, ≥ 0.5 (b)"),
    ({"a": "undecided (+1 [..], n=5)", "b": "—"}, "undecided at every rung"),
])
def test_only_two_different_decided_verdicts_are_a_move(cells, expected):
    assert movement(pd.Series(cells)) == expected


def test_the_tool_writes_the_figure_and_tables(tmp_path):
    reports = [_report(tmp_path, "a", 100, 30.0, -0.5, "undecided", teacher=40.5),
               _report(tmp_path, "b", 300, 45.0, 0.1, "equivalent (±1)")]
    paths = write(reports, tmp_path / "out")
    text = (tmp_path / "out" / "verdicts.md").read_text()
    assert "| a | 100 | 40.50 | 30.00 | 5 |" in text and "| b | 300 | — | 45.00 | 5 |" in text
    assert "- IL > CE: equivalent (±1) where decided (b); undecided at a" in text
    assert paths[2].stat().st_size > 5000


def test_a_folder_without_claims_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a report with a claims table: .*empty"):
        entry([str(tmp_path / "empty")])
