"""One training run: the runner (params -> outputs), the engine, checkpoints, per-run figures."""
