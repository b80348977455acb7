"""Command-line tools around the pipeline: presets, estimate, parallel runner, README splice."""
