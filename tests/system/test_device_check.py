"""The device check's CPU dry run: every step of benchmarks/device_check.sh with the
arguments a GPU machine gets, at tiny sizes, so the script cannot rot between GPU sessions
(its first GPU run once failed on an option throughput.py did not have)."""

from __future__ import annotations

import subprocess
import sys

from ..helpers import REPO, clean_env


def test_the_device_checks_cpu_dry_run_passes_every_step(tmp_path):
    done = subprocess.run(["bash", "benchmarks/device_check.sh"], cwd=REPO, capture_output=True,
                          text=True, timeout=600,
                          env=clean_env(DEVICE="cpu", OUT=str(tmp_path), PYTHON=sys.executable))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "every step passed" in done.stdout
    steps = {p.stem for p in tmp_path.glob("*.txt")}
    assert {"tests", "smoke", "throughput-fp32", "throughput-amp", "throughput-compile",
            "throughput-graphs", "il-overhead", "packing", "estimate"} <= steps
    assert "| ce |" in (tmp_path / "throughput-compile.txt").read_text()
    smoke = (tmp_path / "smoke.txt").read_text()  # every method resumed bit for bit
    assert smoke.count("| equal |") == smoke.count("\n| ") - 1 >= 12, smoke
    assert "| 2 |" in (tmp_path / "packing.txt").read_text()
    estimate = (tmp_path / "estimate.txt").read_text()
    assert "**total**" in estimate and "wall time on 2 worker(s)" in estimate


def test_the_device_check_fails_loudly_without_a_gpu(tmp_path):
    done = subprocess.run(["bash", "benchmarks/device_check.sh"], cwd=REPO, capture_output=True,
                          text=True, timeout=120,
                          env=clean_env(DEVICE="cuda", OUT=str(tmp_path), PYTHON=sys.executable,
                                        CUDA_VISIBLE_DEVICES=""))
    assert done.returncode == 3 and "sees no GPU" in done.stdout + done.stderr
