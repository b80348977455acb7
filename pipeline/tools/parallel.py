"""Run the DVC pipeline with N workers (``make repro J=N``), here or on a Dask cluster.

    python -m pipeline.tools.parallel -j 2                  # CPU: cores split among workers
    python -m pipeline.tools.parallel -j 8 --gpus 0,1,2,3   # 2 workers per GPU
    python -m pipeline.tools.parallel -j 2 aggregate        # only what `aggregate` needs
    python -m pipeline.tools.parallel kd_ablation baselines@ce-0   # T1's runs, one CE run
    python -m pipeline.tools.parallel --dry                 # print the plan
    python -m pipeline.tools.parallel -j 16 --cluster tcp://head:8786 --repo <git url>

Locally, every stage command is handed to a warm process that imported torch and MLflow
once (``pipeline/orchestrate/warm.py``; ``--cold`` turns it off): a stage then starts in about
0.5 s instead of 5 s. With ``-j 1`` this is a plain ``dvc repro`` under that warm process.
Either way it first asks DVC which stages changed: when none did, it stops there (2.5-3.2 s,
median 2.7 s, on the quick profile, against 2.7-3.3 s, median 2.9 s, for a no-op ``dvc
repro``, measured interleaved).

DVC runs stages one at a time. With ``-j N`` this walks DVC's own graph instead: it asks DVC which
stages changed, adds everything downstream of them, and starts ``dvc --wait-for-lock
repro -s <stage>`` for every stage whose upstream stages are done, at most N at once,
those with the most stages downstream first (the teacher and the tuning runs gate most of
the DAG). Each such process records its own stages in their lock file and the run-cache
(DVC's repo lock makes their bookkeeping take turns; training runs concurrently). Stages
that only the last stage waits for (every training instance: ``aggregate`` needs them all)
go several to one process (``--batch``, with ``-k``: one failure does not stop the others),
since each DVC process spends ~0.7 s CPU reading the DAG before it runs anything; batches
shrink as the ready stages run out, so workers finish together. A final plain ``dvc repro``
must then find nothing left to do. A failed stage stops new launches; running ones finish,
everything finished stays recorded, and rerunning resumes. Logs, one per stage:
``.dvc/tmp/parallel/``.

With ``--cluster`` the same plan goes to a Dask cluster: each stage runs on a worker in its
own clone at the current commit (``remote_stage``), upstream outputs come from the DVC
remote's run-cache, MLflow goes to the shared ``MLFLOW_TRACKING_URI``; the final
``dvc repro --pull`` here restores every stage and writes the lock files once.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.core.cli import main as cli_main
from pipeline.orchestrate.runner import run


def positive(text: str) -> int:
    """argparse type: an integer >= 1 (``-j 0`` used to mean 'the default' silently)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: need at least 1")
    return value


def entry(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="stages to reproduce (default: all)")
    parser.add_argument("-j", "--jobs", type=positive, default=None,
                        help="workers (default: the GPU slots, else 1)")
    parser.add_argument("--gpus", default="", help="comma-separated GPU ids, e.g. 0,1")
    parser.add_argument("--per-gpu", type=positive, default=1,
                        help="workers sharing one GPU (small models fit several)")
    parser.add_argument("-f", "--force", action="store_true", help="rerun even unchanged stages")
    parser.add_argument("--dry", action="store_true", help="print the plan and exit")
    parser.add_argument("--cold", action="store_true", help="start every stage in a fresh "
                        "process (no warm server; slower, for comparison)")
    parser.add_argument("--batch", type=positive, default=4, help="at most this many training "
                        "instances per DVC process (1: one process per stage)")
    parser.add_argument("--cluster", help="Dask scheduler address (tcp://host:8786): run the "
                        "stages on its workers, each in its own clone")
    parser.add_argument("--repo", help="with --cluster: the git URL workers clone "
                        "(default: this workspace's path, for a shared file system)")
    args = parser.parse_args(argv)
    gpus = [g for g in args.gpus.split(",") if g] * args.per_gpu
    workers = args.jobs or max(1, len(gpus))
    sys.exit(run(args.targets, workers, gpus, args.force, args.dry, args.cluster, args.repo,
                 warm=not args.cold, batch=args.batch))


if __name__ == "__main__":
    cli_main(entry)
