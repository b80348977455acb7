"""Thin DVC entry points: parse the command line and params, call ``pipeline``.

Before any stage runs, the process machinery's one hook (``pipeline/orchestrate``): a
stopping run starts no new stage, and under ``make repro`` the command runs in a warm
process that already imported torch and MLflow.
"""

from pipeline.orchestrate import stage_start

stage_start()
