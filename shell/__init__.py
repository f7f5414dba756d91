"""Gavel's app shell: the ``gavel`` CLI, the local stack, the demo, and the adapters the
services share (Kafka clients, the MLflow registry, Redis, ``models.updates``).

The contracts (topics, schemas, settings, features) live apart in :mod:`gavel`, which
imports none of this.
"""
