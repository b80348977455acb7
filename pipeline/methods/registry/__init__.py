"""One module per method: its params section (a ``Section``) and its registry entry
(``METHOD = MethodInfo(...)``), torch-free so that validating params imports no torch. The
loss lives in ``pipeline/methods/<name>.py``; :class:`pipeline.methods.Registry` finds
every module here."""
