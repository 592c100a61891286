"""Loyal's common base: typed settings, domain errors and logging, importable by every layer."""

__version__ = "0.1.0"
