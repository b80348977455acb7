"""What every stage shares: params, errors, atomic files, tracking, metrics, models, prepared data."""
