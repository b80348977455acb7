"""Thin DVC entry points: parse the command line and params, call ``pipeline``."""
