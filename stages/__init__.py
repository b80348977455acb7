"""Thin DVC entry points: parse the command line and params, call ``pipeline``.

Under ``make repro`` a stage command is handed to a warm process that already imported
torch and MLflow (``pipeline/tools/warm.py``); elsewhere this returns and the stage runs here.
A stage that DVC starts while the runner is stopping (Ctrl-C) exits at once
(``pipeline/tools/guard.py``).
"""

from pipeline.tools.guard import refuse_if_stopping
from pipeline.tools.warm import delegate

refuse_if_stopping()
delegate()
