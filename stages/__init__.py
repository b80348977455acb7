"""Thin DVC entry points: parse the command line and params, call ``pipeline``.

Under ``make repro`` a stage command is handed to a warm process that already imported
torch and MLflow (``pipeline/tools/warm.py``); elsewhere this returns and the stage runs here.
"""

from pipeline.tools.warm import delegate

delegate()
