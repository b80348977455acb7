"""The parallel runner (``python -m pipeline.tools.parallel``) on tiny DAGs vs `dvc repro`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.orchestrate.jobs import failed_in, split_log, worker_env
from pipeline.orchestrate.plan import Plan, label
from pipeline.tools.report import lock_files, lock_stages, metric_md5s

from ..helpers import REPO, dvc, make_dvc_project, sh, small_dag


def lock_summary(root: Path) -> dict:
    """Per stage: command, params, and dependencies (code by hash; trained data by path only,
    since workers with fewer CPU threads may round differently in the last digits)."""
    stages = lock_stages(root)
    out = {}
    for name, stage in stages.items():
        deps = {d["path"]: d.get("md5") if d["path"].endswith(".py") else None
                for d in stage.get("deps", [])}
        out[name] = (stage["cmd"], json.dumps(stage.get("params"), sort_keys=True), deps,
                     sorted(o["path"] for o in stage.get("outs", [])))
    return out


def runner(root: Path, *args: str, check: bool = True, **env: str):
    return sh(root, sys.executable, "-m", "pipeline.tools.parallel", *args, check=check,
              PYTHONPATH=str(root), **env)


def test_parallel_run_records_what_a_sequential_run_records(tmp_path, base_raw, migrated_db):
    raw = small_dag(base_raw)
    # `make repro` (J=1): DVC's own `dvc repro`, its stage commands started warm
    sequential = make_dvc_project(tmp_path / "seq", raw, migrated_db)
    runner(sequential, "-j", "1")
    assert json.loads(dvc(sequential, "status", "--json").stdout) == {}
    # up to date: stops early, and stops the warm server it started while DVC planned
    scratch = tmp_path / "scratch"  # the server's socket folder goes here (tempfile)
    scratch.mkdir()
    noop = runner(sequential, "-j", "1", TMPDIR=str(scratch))
    assert "nothing to run" in noop.stdout
    assert list(scratch.iterdir()) == []  # removed after the server process exited

    parallel = make_dvc_project(tmp_path / "par", raw, migrated_db)
    plan = runner(parallel, "--dry").stdout
    # first the stages that wait for nothing: the data and the code manifests (dag/code)
    firsts = {line for line in plan.splitlines() if line.endswith("  <- -")}
    assert firsts == {"prepare  <- -", "code_train  <- -", "code_tune  <- -", "code_surface  <- -"}
    assert plan.splitlines()[0] in firsts
    assert "baselines@ce-0  <- code_train, prepare" in plan  # teacher-free: beside the teacher
    # targets by bare name (the stages live in dag/<part>/dvc.yaml) or by matrix stage
    one = runner(parallel, "--dry", "baselines@ce-0").stdout.splitlines()
    assert sorted(one) == ["baselines@ce-0  <- code_train, prepare", "code_train  <- -",
                           "prepare  <- -"]
    group = {line.split()[0] for line in runner(parallel, "--dry", "baselines").stdout.splitlines()}
    assert group == {"prepare", "code_train", "baselines@ce-0", "baselines@label_smoothing-0"}
    assert "no stage named nosuch" in runner(parallel, "--dry", "nosuch", check=False).stderr

    # one instance fails: it is reported with its log, no new stage starts after it, and
    # everything that finished is recorded
    module = parallel / "pipeline/methods/label_smoothing.py"
    good = module.read_text()
    module.write_text(good.replace("        logits = self.student(x)\n",
                                   "        raise RuntimeError('sabotaged')\n", 1))
    failed = runner(parallel, "-j", "2", check=False)
    assert failed.returncode == 1
    assert "FAILED baselines@label_smoothing-0" in failed.stdout
    assert "sabotaged" in failed.stderr and "baselines_label_smoothing-0.log" in failed.stderr
    done = [line.split()[2] for line in failed.stdout.splitlines()
            if line.startswith("[parallel] done ")]
    assert done and "aggregate" not in done
    pending = set(map(label, json.loads(dvc(parallel, "status", "--json").stdout)))
    assert not pending & set(done)
    assert "baselines@label_smoothing-0" in pending

    # mended, a rerun runs only what is left, then `dvc repro` finds nothing to do
    module.write_text(good)
    resumed = runner(parallel, "-j", "2")
    again = {line.split()[2] for line in resumed.stdout.splitlines()
             if line.startswith("[parallel] start ")}
    assert not again & set(done) and "aggregate" in again
    assert "finds nothing left to run" in resumed.stdout
    assert json.loads(dvc(parallel, "status", "--json").stdout) == {}
    assert lock_summary(parallel) == lock_summary(sequential)
    # one torch thread per run (the quick profile's runtime.num_threads): the same numbers
    assert metric_md5s(parallel) == metric_md5s(sequential)


def test_plan_waits_only_for_stages_in_the_plan():
    plan = Plan({"a": set(), "b": {"a"}, "c": set()}, ["a", "c", "b"])
    assert plan.ready(done=set(), started=set()) == ["a", "c"]
    assert plan.ready(done={"a"}, started={"a", "c"}) == ["b"]


def test_gating_stages_go_first_and_alone_training_instances_in_shrinking_batches():
    # prepare -> teacher -> kd-0, kd-1 ; prepare -> ce-0..ce-5 ; everything -> aggregate
    train = [f"ce-{i}" for i in range(6)]
    waits = {"prepare": set(), "teacher": {"prepare"}, "kd-0": {"prepare", "teacher"},
             "kd-1": {"prepare", "teacher"}, **{s: {"prepare"} for s in train}}
    waits["aggregate"] = set(waits)
    downstream = {s: sum(s in w for w in waits.values()) for s in waits}
    assert downstream["teacher"] == 3 and downstream["ce-0"] == 1  # counted by hand
    order = ["prepare", *train, "teacher", "kd-0", "kd-1", "aggregate"]
    plan = Plan(waits, order, downstream=downstream)
    ready = plan.ready(done={"prepare"}, started={"prepare"})
    assert ready == ["teacher", *train]  # the teacher gates 3 stages: first, ahead of order
    assert plan.batch(ready, workers=2, cap=4) == ["teacher"]
    # 6 instances that only `aggregate` waits for, 2 workers: 6 // 4 = 1 per process...
    assert plan.batch(train, workers=2, cap=4) == ["ce-0"]
    # ...16 of them: 4 (the cap); then fewer as they run out; cap 1: one stage per process
    many = [f"x-{i}" for i in range(16)]
    plan.downstream.update(dict.fromkeys(many, 1))
    assert plan.batch(many, workers=2, cap=4) == many[:4]
    assert plan.batch(many[:10], workers=2, cap=4) == many[:2]
    assert plan.batch(many, workers=2, cap=1) == many[:1]


def test_a_batch_log_is_split_per_stage_and_failures_are_read_off_dvc(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.orchestrate.jobs.LOG_DIR", tmp_path)
    a, b, c = (f"dag/x/dvc.yaml:x@{i}" for i in "abc")
    # the shape of `dvc repro -k -s a b c` output when b fails (DVC 3.67, checked on a toy repo)
    text = (f"Running stage '{a}':\n> cmd a\nUpdating lock file 'dag/x/dvc.lock'\n\n"
            f"Running stage '{b}':\n> cmd b\nTraceback: boom\n"
            "WARNING: failed to run: cmd b, exited with 1\n\n"
            f"Stage '{c}' didn't change, skipping\n"
            f"ERROR: failed to reproduce '{b}'\n")
    split_log(text, [a, b, c])
    assert (tmp_path / "x_a.log").read_text().startswith(f"Running stage '{a}'")
    assert "boom" in (tmp_path / "x_b.log").read_text()
    assert "boom" not in (tmp_path / "x_a.log").read_text() + (tmp_path / "x_c.log").read_text()
    assert failed_in(text, [a, b, c]) == [b]
    assert failed_in(f"ERROR: failed to reproduce stages: '{a}' and '{c}'", [a, b, c]) == [a, c]
    assert failed_in("Killed", [a, b]) == [a, b]  # nothing named: none counts as done


def test_a_failed_instance_in_a_batch_leaves_its_batch_mates_recorded(tmp_path):
    """16 independent instances feeding one last stage: with 2 workers they go 4 to a DVC
    process (``-k``); one of the first batch fails, its batch mates still run and are
    recorded, and no new process starts."""
    root = tmp_path / "toy"
    root.mkdir()
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    outs = [f"out{i}" for i in range(16)]
    (root / "dvc.yaml").write_text(
        "stages:\n"
        "  part:\n"
        "    matrix:\n"
        f"      i: {list(range(16))}\n"  # fails for the instance named in the file `fail`
        "    cmd: sh -c 'echo ran ${item.i}; test ${item.i} != $(cat fail) && echo ok > out${item.i}'\n"
        "    outs:\n"
        "      - out${item.i}\n"
        "  last:\n"
        f"    cmd: cat {' '.join(outs)} > all\n"
        f"    deps: [{', '.join(outs)}]\n"
        "    outs: [all]\n")
    env = {"PYTHONPATH": str(REPO)}
    plan = sh(root, sys.executable, "-m", "pipeline.tools.parallel", "--dry", **env).stdout
    victim = plan.splitlines()[1].split()[0]  # the first batch runs the plan's first 4
    (root / "fail").write_text(victim.split("@")[1])

    failed = sh(root, sys.executable, "-m", "pipeline.tools.parallel", "-j", "2", "--cold",
                check=False, **env)
    assert failed.returncode == 1
    starts = [line for line in failed.stdout.splitlines() if line.startswith("[parallel] start")]
    assert [line.split("(worker ")[1][0] for line in starts[:4]] == ["0"] * 4  # one process
    assert f"FAILED {victim}" in failed.stdout
    assert f"ran {victim.split('@')[1]}" in failed.stderr  # its log's tail
    log = (root / f".dvc/tmp/parallel/{victim.replace('@', '_')}.log").read_text()
    ran = [line for line in log.splitlines() if line.startswith("ran ")]
    assert ran == [f"ran {victim.split('@')[1]}"]  # its own part of the batch's output only
    done = {line.split()[2] for line in failed.stdout.splitlines()
            if line.startswith("[parallel] done ")}
    launched = {line.split()[2] for line in starts}
    assert {line.split()[2] for line in starts[:4]} - {victim} <= done  # `-k`: mates ran
    assert done == launched - {victim} and len(launched) < 16  # nothing new after it
    pending = set(json.loads(dvc(root, "status", "--json").stdout))
    assert pending == {f"part@{i}" for i in range(16)} - done | {"last"}

    # a broken dvc.yaml: one line naming the file, exit 2, no traceback
    (root / "dvc.yaml").write_text((root / "dvc.yaml").read_text() + "  bad: [\n")
    scratch = tmp_path / "scratch"  # where the warm server started before planning lives
    scratch.mkdir()
    broken = sh(root, sys.executable, "-m", "pipeline.tools.parallel", "-j", "2", check=False,
                TMPDIR=str(scratch), **env)
    assert broken.returncode == 2 and "dvc.yaml" in broken.stderr
    assert "Traceback" not in broken.stderr
    assert list(scratch.iterdir()) == []  # that server was stopped and its folder removed


def test_workers_share_cores_or_gpus(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert worker_env(0, 4, [])["OMP_NUM_THREADS"] == "2"
    assert worker_env(1, 16, [])["OMP_NUM_THREADS"] == "1"
    gpus = ["0", "1"] * 2  # --gpus 0,1 --per-gpu 2
    assert [worker_env(s, 4, gpus)["CUDA_VISIBLE_DEVICES"] for s in range(4)] == [
        "0", "1", "0", "1"]
    # packed GPU workers share the host's cores too (4 workers x 8 threads on 8 cores would
    # oversubscribe them)
    assert {worker_env(s, 4, gpus)["OMP_NUM_THREADS"] for s in range(4)} == {"2"}


def test_two_machines_through_dask_and_a_dvc_remote(tmp_path, base_raw, migrated_db):
    """Two Dask worker processes stand for two machines: each stage runs in its own clone,
    data travels through a local DVC remote, MLflow goes to one shared store (standing for
    the tracking server), and the coordinator's final `dvc repro --pull` records it all."""
    import random
    import shutil

    import yaml
    from distributed import LocalCluster

    raw = small_dag(base_raw)
    raw["baselines"]["methods"] = ["ce"]
    # the usual case: a clone whose lock files were committed from another machine, their
    # outputs in no remote (here: a run elsewhere, its output md5s replaced)
    elsewhere = make_dvc_project(tmp_path / "elsewhere", raw, migrated_db)
    runner(elsewhere, "-j", "2")
    root = make_dvc_project(tmp_path / "coordinator", raw, migrated_db)
    rng = random.Random(0)
    for lock in lock_files(elsewhere):
        data = yaml.safe_load((elsewhere / lock).read_text())
        for entry in data["stages"].values():
            for output in entry.get("outs", []):
                suffix = ".dir" if output["md5"].endswith(".dir") else ""
                output["md5"] = f"{rng.getrandbits(128):032x}{suffix}"
        (root / lock).write_text(yaml.safe_dump(data, sort_keys=False))
    dvc(root, "remote", "add", "-d", "store", str(tmp_path / "dvc-remote"))
    (root / ".gitignore").write_text("mlflow.db\nmlartifacts/\ncheckpoints/\n")
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny")
    shared = tmp_path / "server.db"
    shutil.copy(migrated_db, shared)
    uri = f"sqlite:///{shared}"

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        out = sh(root, sys.executable, "-m", "pipeline.tools.parallel", "-j", "2",
                 "--cluster", cluster.scheduler_address, check=False,
                 MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(root))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "finds nothing left to run" in out.stdout
    assert json.loads(dvc(root, "status", "--json").stdout) == {}
    assert (root / "results/tables/all_tables.md").is_file()  # restored from the remote
    from mlflow.tracking import MlflowClient

    from ..helpers import seed_runs

    names = [r.info.run_name for r in seed_runs(MlflowClient(uri))]
    assert sorted(names) == sorted(set(names))  # every run once
    assert {"teacher@shared/seed-0", "baselines@ce-0", "kd_ablation@full-0", "introspective@full-0",
            "tuned@ce-0", "aggregate"} <= set(names)
    assert not seed_runs(MlflowClient(f"sqlite:///{root / 'mlflow.db'}"))  # all on the server
