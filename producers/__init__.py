"""Producers (`gavel replay`): auction sources (synthetic generator, Kaggle CSV), replayed
onto Kafka in event-time order."""
