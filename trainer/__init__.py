"""The trainer (`gavel train`, `gavel trainer run`): first training, retraining on drift
alerts, gating and promotion."""
