"""The local stack: real Kafka (KRaft), Redis and MLflow servers under ``.stack/``, no Docker."""
