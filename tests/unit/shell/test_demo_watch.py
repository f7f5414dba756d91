"""The demo's output statistics: latency percentiles with the warm-up left out."""

from __future__ import annotations

import pytest

from shell.demo.watch import OutputStats


def test_latency_percentiles_leave_the_warm_up_out() -> None:
    stats = OutputStats()
    stats.latencies_s = [(100.0 + i * 0.1, 2.0) for i in range(50)]  # first 5 s: slow
    stats.latencies_s += [(105.0 + i * 0.01, 0.05) for i in range(1000)]
    assert stats.latency_percentiles(warmup_s=5.0)["p99"] == pytest.approx(0.05)
    assert stats.warmup_max_s(5.0) == pytest.approx(2.0)
    assert stats.latency_percentiles()["p99"] == pytest.approx(2.0)  # all of it
    assert stats.warmup_max_s(0.0) is None


def test_no_latencies_no_percentiles() -> None:
    assert OutputStats().latency_percentiles(10.0) == {}
    assert OutputStats().warmup_max_s(10.0) is None
