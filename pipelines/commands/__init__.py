"""CLI command groups, one module per model; each a thin shell over plain functions."""
