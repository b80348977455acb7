"""The ``prepare`` stage's dataset sources and splits."""
