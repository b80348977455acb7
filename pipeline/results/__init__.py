"""What reads finished runs: tables, table figures, tuning selection."""
