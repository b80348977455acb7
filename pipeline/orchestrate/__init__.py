"""The process machinery that runs the DAG: none of it decides a number, and no stage
instance depends on it (editing it retrains nothing).

* :mod:`.plan` — which stages to run and in what order (DVC's own graph and change check);
* :mod:`.jobs` — starting them: a DVC process per stage or batch here, or a Dask task;
* :mod:`.runner` — the loop that keeps N workers busy, and ``make repro``'s entry;
* :mod:`.records` — the lock files: one runner per repository, and a cut lock file put back;
* :mod:`.signals` — stopping cleanly: which signals stop a run, their exit codes, relaying;
* :mod:`.guard` — the process between the runner and DVC that no terminal signal reaches;
* :mod:`.warm` — warm starts: a stage command handed to a process that already imported
  torch and MLflow (:mod:`.forkserver`, which forks a child per stage);
* :mod:`.schedule` — the same scheduling simulated on estimated times (``make estimate``).

The command is ``python -m pipeline.tools.parallel`` (``make repro J=N``).
"""


def stage_start() -> None:
    """The one hook into the stages (``stages/__init__.py`` calls it before any stage runs):
    a stage that DVC starts while the runner is stopping exits at once (:mod:`.guard`), and
    under ``make repro`` the command is handed to the warm process (:mod:`.warm`); elsewhere
    this returns and the stage runs in its own process."""
    from pipeline.orchestrate.guard import refuse_if_stopping
    from pipeline.orchestrate.warm import delegate

    refuse_if_stopping()
    delegate()
