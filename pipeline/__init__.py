"""ilkd: the library behind the DVC stages (config, data, models, methods, engine, tracking)."""
