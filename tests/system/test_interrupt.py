"""Stopping a run: Ctrl-C, SIGTERM and SIGKILL never leave a lock file DVC cannot read.

The hazard: DVC rewrites a lock file in place after each stage; a DVC process interrupted
while writing leaves it cut. ``fake_dvc`` below behaves like DVC in the way that matters
(runs a command, then writes a file line by line), so the guard's promise can be checked
exactly where the hazard is, and the end-to-end test checks the real runner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from pipeline.core.errors import ConfigError
from pipeline.orchestrate.guard import STOP_ENV
from pipeline.orchestrate.records import LockKeeper, RunnerLock

from ..helpers import REPO, clean_env, dvc, make_dvc_project

LINES = 20
FAKE_DVC = textwrap.dedent(f"""
    import subprocess, sys, time
    # the stage command: sleeps argv[2] seconds
    stage = subprocess.run([sys.executable, "-c", "import sys, time; time.sleep(float(sys.argv[1]))",
                            sys.argv[2]])
    with open(sys.argv[1], "w") as lock:  # then, like DVC, the lock file is rewritten in place
        for i in range({LINES}):
            lock.write(f"stage{{i}}: {{{{md5: {{i}}}}}}\\n")
            lock.flush()
            time.sleep(0.05)
    sys.exit(1 if stage.returncode else 0)
""")


def _fake(tmp_path: Path) -> Path:
    script = tmp_path / "fake_dvc.py"
    script.write_text(FAKE_DVC)
    return script


def _wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _guarded(tmp_path: Path, lock: Path, stage_seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.orchestrate.guard", "--", sys.executable,
                             str(_fake(tmp_path)), str(lock), str(stage_seconds)],
                            cwd=REPO, env=clean_env(), start_new_session=True)


def _writing(lock: Path):
    return lambda: lock.exists() and lock.stat().st_size > 0


def test_a_process_group_ctrl_c_cuts_a_lock_file_being_written(tmp_path):
    """The hazard itself, unguarded: what a terminal's Ctrl-C does to DVC mid-write."""
    lock = tmp_path / "dvc.lock"
    proc = subprocess.Popen([sys.executable, str(_fake(tmp_path)), str(lock), "0.1"],
                            start_new_session=True)
    _wait_for(_writing(lock))
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=20) != 0
    assert len(lock.read_text().splitlines()) < LINES


def test_the_guard_lets_dvc_finish_writing_and_exits_130(tmp_path):
    lock = tmp_path / "dvc.lock"
    guard = _guarded(tmp_path, lock, 0.1)
    _wait_for(_writing(lock))
    guard.send_signal(signal.SIGINT)
    assert guard.wait(timeout=20) == 130
    assert len(lock.read_text().splitlines()) == LINES


def test_the_guard_stops_the_stage_command_not_dvc(tmp_path):
    """A 10-minute stage command gets the stop (here SIGTERM, as the runner relays it); DVC
    then records its failure and writes the whole lock file; the guard says 143. Bounded by
    the event, not a stopwatch: the guard exits long before the stage could have finished
    (a generous 60-s wait holds on a loaded machine)."""
    lock = tmp_path / "dvc.lock"
    guard = _guarded(tmp_path, lock, 600)
    time.sleep(1.0)
    guard.send_signal(signal.SIGTERM)
    assert guard.wait(timeout=60) == 143
    assert len(lock.read_text().splitlines()) == LINES


def test_a_stage_started_while_the_run_stops_does_not_start(tmp_path):
    stop = tmp_path / "stop"
    code = "from pipeline.orchestrate.guard import refuse_if_stopping as r; r(); print('ran')"
    run = lambda: subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,  # noqa: E731
                                 text=True, env=clean_env(**{STOP_ENV: str(stop)}))
    assert run().stdout == "ran\n"
    stop.touch()
    refused = run()
    assert refused.returncode == 130 and "stopping" in refused.stderr and not refused.stdout


def test_killing_the_runner_with_sigkill_stops_what_it_started(tmp_path):
    """The runner cannot stop anything after SIGKILL: its guards get the parent-death signal
    and stop their stage commands themselves, and DVC still finishes its lock file."""
    lock = tmp_path / "dvc.lock"
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pipeline.orchestrate.jobs import guarded
            guard = guarded([sys.executable, {str(_fake(tmp_path))!r}, {str(lock)!r}, "60"], None)
            print(guard.pid, flush=True)
            time.sleep(120)
        """)], cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, text=True)
    guard_pid = int(parent.stdout.readline())
    time.sleep(1.0)
    parent.kill()
    parent.wait()
    _wait_for(lambda: not Path(f"/proc/{guard_pid}").exists(), timeout=15)
    assert len(lock.read_text().splitlines()) == LINES


def test_one_runner_per_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not a DVC project"):
        RunnerLock(tmp_path / "runner.pid").__enter__()
    assert not (tmp_path / ".dvc").exists()  # nothing made outside a project
    (tmp_path / ".dvc").mkdir()
    path = tmp_path / "runner.pid"
    with RunnerLock(path):
        with pytest.raises(ConfigError, match=rf"another runner \(pid {os.getpid()}\)"):
            RunnerLock(path).__enter__()
    with RunnerLock(path):  # released on exit
        pass


@pytest.mark.parametrize("args", [["-j", "0"], ["-j", "-2"], ["--per-gpu", "0"], ["--batch", "x"]])
def test_worker_counts_below_one_are_refused(args):
    done = subprocess.run([sys.executable, "-m", "pipeline.tools.parallel", *args, "--dry"],
                          cwd=REPO, capture_output=True, text=True, env=clean_env())
    assert done.returncode == 2
    assert args[0] in done.stderr and "Traceback" not in done.stderr


def test_a_lock_file_that_does_not_parse_gets_its_last_good_copy_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dag/part").mkdir(parents=True)
    good = "schema: '2.0'\nstages:\n  a:\n    cmd: echo a\n"
    lock = tmp_path / "dag/part/dvc.lock"
    lock.write_text(good)
    keeper = LockKeeper(tmp_path / "kept")
    lock.write_text(good + "  b:\n    cmd: echo b\n    params:\n      params.yaml:\n  c: [\n")
    assert keeper.check() == [Path("dag/part/dvc.lock")]
    assert lock.read_text() == good
    lock.write_text("")  # cut before its first line: parses (as nothing), still broken
    assert keeper.check(["dag/part/dvc.yaml:a"]) == [Path("dag/part/dvc.lock")]
    assert lock.read_text() == good
    assert keeper.check(["prepare"]) == []  # another part's lock file: not looked at


# ---------------------------------------------------------------- the real runner, J=2


def _start(root: Path) -> subprocess.Popen:
    """``make repro J=2`` as a terminal starts it: its own process group, which a Ctrl-C
    (``os.killpg``) reaches as a whole."""
    return subprocess.Popen([sys.executable, "-m", "pipeline.tools.parallel", "-j", "2"],
                            cwd=root, env=clean_env(PYTHONPATH=str(root)), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _until(proc: subprocess.Popen, text: str) -> list[str]:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never printed:\n{''.join(lines)}")


def _finish(proc: subprocess.Popen, lines: list[str]) -> tuple[int, str]:
    rest = proc.stdout.read()
    return proc.wait(timeout=300), "".join(lines) + rest


def _started(output: str) -> set[str]:
    return {line.split()[2] for line in output.splitlines() if line.startswith("[parallel] start")}


def _processes_in(root: Path) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["cwd"]):
        if proc.info["cwd"] and Path(proc.info["cwd"]) == root:
            found.append(proc.pid)
    return found


def _records_intact(root: Path) -> None:
    """Every lock file parses, DVC reads them all, and no MLflow run is left RUNNING."""
    from mlflow.tracking import MlflowClient

    for lock in [root / "dvc.lock", *root.glob("dag/*/dvc.lock")]:
        if lock.exists():
            assert isinstance(yaml.safe_load(lock.read_text()), dict), lock
    dvc(root, "status")
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]


def test_ctrl_c_sigterm_and_sigkill_at_several_points_lose_no_record(tmp_path, base_raw,
                                                                     migrated_db):
    from ..helpers import small_dag

    raw = small_dag(base_raw)
    raw["seeds"] = [0, 1]
    for role in ("teacher", "student"):  # long enough to be caught training
        raw[role]["train"]["epochs"] = 40
    root = make_dvc_project(tmp_path / "p", raw, migrated_db)
    finished: set[str] = set()

    def done_in(output: str) -> set[str]:
        return {line.split()[2] for line in output.splitlines()
                if line.startswith("[parallel] done ")}

    # 1. Ctrl-C while the teacher and a tuning run train
    proc = _start(root)
    lines = _until(proc, "start shared_teacher")
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)
    code, out = _finish(proc, lines)
    assert code == 130 and "STOPPED" in out, out
    _records_intact(root)
    finished |= done_in(out)

    # 2. Ctrl-C the moment a stage ends: its DVC process is recording it, others train
    proc = _start(root)
    lines = _until(proc, "[parallel] done ")
    os.killpg(proc.pid, signal.SIGINT)
    code, out = _finish(proc, lines)
    assert code == 130, out
    assert not _started(out) & finished  # what finished before is not run again
    _records_intact(root)
    finished |= done_in(out)

    # 3. SIGTERM to the runner alone (a scheduler stopping a job)
    proc = _start(root)
    lines = _until(proc, "[parallel] start ")
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    code, out = _finish(proc, lines)
    assert code == 143, out
    _records_intact(root)
    finished |= done_in(out)

    # 4. SIGKILL to the runner alone: what it started stops within seconds
    proc = _start(root)
    lines = _until(proc, "[parallel] start ")
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    _wait_for(lambda: not _processes_in(root), timeout=120)  # generous: a loaded machine
    _records_intact(root)

    # 5. a rerun finishes only what is left, and DVC finds the DAG up to date
    proc = _start(root)
    code, out = _finish(proc, [])
    assert code == 0 and "finds nothing left to run" in out, out
    assert not _started(out) & finished
    assert "aggregate" in _started(out)
    _records_intact(root)
    assert dvc(root, "status", "--json").stdout.strip() == "{}"


def test_an_untested_dvc_falls_back_to_plain_dvc_repro(tmp_path, monkeypatch, capsys):
    """The runner uses DVC's internals: with a DVC version it was not tested with it says
    so in one line and runs DVC's own `dvc repro` (which still records every stage)."""
    import importlib.metadata

    from pipeline.orchestrate import plan, runner

    root = tmp_path / "toy"
    root.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text("stages:\n  one:\n    cmd: echo hi > out\n    outs: [out]\n")
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "9.1.0" if name == "dvc" else real(name))
    monkeypatch.chdir(root)
    assert plan.untested_dvc() == "9.1.0"
    assert runner.run([], 2, []) == 0
    assert "DVC 9.1.0 is not a version this runner was tested with" in capsys.readouterr().err
    assert (root / "out").read_text() == "hi\n" and (root / "dvc.lock").is_file()
    with pytest.raises(ConfigError, match="DVC 9.1.0"):
        runner.run([], 1, [], dry=True)
    monkeypatch.setattr(importlib.metadata, "version", real)
    assert plan.untested_dvc() is None  # the installed one is tested
