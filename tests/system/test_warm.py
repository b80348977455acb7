"""The warm start (pipeline/orchestrate/warm.py): a stage handed to the warm server behaves as the
same command in a fresh process — output, exit status, signals, environment, results."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.orchestrate.warm import ENV, warm_server

from ..helpers import REPO, clean_env, make_dvc_project, sh, tiny_raw

PROBE = '''"""A stand-in stage: reports what it sees, or waits to be interrupted."""
import os
import sys
import time

if sys.argv[1:] == ["wait"]:
    open("pid", "w").write(str(os.getpid()))
    print("ready", flush=True)
    try:
        time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted cleanly", file=sys.stderr)
        sys.exit(130)
elif sys.argv[1:] == ["fail"]:
    raise RuntimeError("probe failed")
else:
    import torch
    print(f"version 1 cwd={os.getcwd()} mark={os.environ.get('MARK')} "
          f"threads={torch.get_num_threads()} args={sys.argv[1:]}")
    sys.exit(int(os.environ.get("CODE", "0")))
'''


@pytest.fixture(scope="module")
def server():
    with warm_server() as env:
        assert ENV in env
        yield env[ENV]


@pytest.fixture
def project(tmp_path) -> Path:
    for name in ("pipeline", "stages"):
        shutil.copytree(REPO / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "stages" / "probe.py").write_text(PROBE)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def probe(project: Path, socket_path: str | None, *args: str, **env: str):
    extra = {ENV: socket_path} if socket_path else {}
    return subprocess.run([sys.executable, "-m", "stages.probe", *args], cwd=project,
                          env=clean_env(**extra, **env), capture_output=True, text=True,
                          timeout=120)


def test_a_warm_stage_sees_its_own_directory_arguments_environment_and_code(server, project):
    cold = probe(project, None, "a", "b", MARK="x", OMP_NUM_THREADS="1")
    warm = probe(project, server, "a", "b", MARK="x", OMP_NUM_THREADS="1")
    assert cold.returncode == warm.returncode == 0, warm.stderr
    assert warm.stdout == cold.stdout
    assert f"cwd={project} mark=x threads=1 args=['a', 'b']" in warm.stdout
    assert "threads=2" in probe(project, server, OMP_NUM_THREADS="2").stdout
    # project code is read when the stage starts, not when the server did
    (project / "stages" / "probe.py").write_text(PROBE.replace("version 1", "version 2"))
    assert probe(project, server).stdout.startswith("version 2")


def test_exit_status_and_errors_come_back(server, project):
    assert probe(project, server, CODE="3").returncode == 3
    failed = probe(project, server, "fail")
    assert failed.returncode == 1
    assert "RuntimeError: probe failed" in failed.stderr  # the traceback, on the caller's stderr
    user_error = subprocess.run(
        [sys.executable, "-m", "stages.train", "baselines", "--method", "nope", "--seed", "0"],
        cwd=project, env=clean_env(**{ENV: server}), capture_output=True, text=True)
    assert user_error.returncode == 2
    assert "unknown method 'nope'" in user_error.stderr


def test_a_large_environment_arrives_whole(server, project):
    big = "x" * 100_000  # five of them: more than one socket buffer (one variable <= 128 KiB)
    out = probe(project, server, MARK=big, **{f"BIG{i}": big for i in range(5)})
    assert out.returncode == 0, out.stderr
    assert "[warm]" not in out.stderr  # handed over, not run cold after a failed hand-over
    assert f"mark={big} " in out.stdout


def test_without_a_reachable_server_the_stage_runs_cold(project, tmp_path):
    out = probe(project, str(tmp_path / "no-such-socket"), "a", MARK="y")
    assert out.returncode == 0
    assert "mark=y" in out.stdout and "starting cold" in out.stderr


def _gone(pid: int, timeout: float = 30) -> bool:
    """The process exited within ``timeout`` (a zombie waiting for its reaper counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def _start_waiting(project: Path, server: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "stages.probe", "wait"], cwd=project,
                            env=clean_env(**{ENV: server}), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_ctrl_c_reaches_the_stage(server, project):
    proc = _start_waiting(project, server)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted cleanly" in err


def test_a_dead_caller_stops_its_stage(server, project):
    proc = _start_waiting(project, server)
    pid = int((project / "pid").read_text())
    assert pid != proc.pid  # the stage runs in the server's child, not in the caller
    proc.kill()
    proc.wait()
    assert _gone(pid), "the stage kept running after its caller died"


def test_a_training_stage_writes_the_same_results_warm_and_cold(tmp_path, base_raw,
                                                               migrated_db, server):
    raw = tiny_raw(base_raw)
    outputs = {}
    for mode in ("cold", "warm"):
        root = make_dvc_project(tmp_path / mode, raw, migrated_db)
        extra = {ENV: server} if mode == "warm" else {}
        sh(root, sys.executable, "-m", "stages.prepare", **extra)
        sh(root, sys.executable, "-m", "stages.train", "baselines", "--method", "ce",
           "--seed", "0", **extra)
        run = root / "results/baselines/ce-0"
        history = [line.rsplit(",", 1)[0]  # without epoch_time_s
                   for line in (run / "history.csv").read_text().splitlines()]
        outputs[mode] = ((root / "data/prepared/meta.json").read_text(),
                         json.loads((run / "metrics.json").read_text()), history)
    assert outputs["warm"] == outputs["cold"]


def test_the_server_stops_when_whoever_started_it_dies(tmp_path):
    """A killed `make repro` must not leave a warm process behind."""
    path = tmp_path / "socket"
    starter = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-m', 'pipeline.orchestrate.warm', 'serve', "
        f"'{path}']); print(p.pid, flush=True); time.sleep(60)")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    server_pid = int(starter.stdout.readline())
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists()
    starter.kill()
    starter.wait()
    assert _gone(server_pid), "the warm server outlived the process that started it"
