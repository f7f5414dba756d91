"""Gavel: shared contracts (topics, schemas, settings) and the ``gavel`` command line."""

__version__ = "0.1.0"
