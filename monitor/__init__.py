"""The drift monitor (`gavel monitor`): joins scores with sales, computes windowed drift
and performance, alerts on `drift.alerts` and exports Prometheus metrics."""
