"""Tests for monitor.join: predictions joined with sales in bounded state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.join import JoinCounters, Joined, PredictionJoin

T0 = datetime(2015, 3, 2, 14, tzinfo=UTC)
TTL = timedelta(hours=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def prediction(price: float, version: str = "1") -> dict[str, object]:
    return {"predicted_price": price, "model_version": version}


def test_prediction_then_sale_joins() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=10)
    assert join.add_prediction("a", at(0), prediction(100.0)) is None
    assert (join.backlog, join.waiting_sales) == (1, 0)
    joined = join.add_sale("a", at(30), 90.0)
    assert joined == Joined("a", prediction(100.0), 90.0, at(30))
    assert (join.backlog, join.waiting_sales) == (0, 0)
    assert join.counters == JoinCounters(joined=1)


def test_sale_then_prediction_joins() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=10)
    assert join.add_sale("a", at(30), 90.0) is None
    assert (join.backlog, join.waiting_sales) == (0, 1)
    joined = join.add_prediction("a", at(0), prediction(100.0))
    assert joined == Joined("a", prediction(100.0), 90.0, at(30))
    assert (join.backlog, join.waiting_sales) == (0, 0)
    assert join.counters.joined == 1


def test_other_ids_do_not_join() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=10)
    join.add_prediction("a", at(0), prediction(1.0))
    assert join.add_sale("b", at(1), 2.0) is None
    assert (join.backlog, join.waiting_sales, join.counters.joined) == (1, 1, 0)


def test_a_rescored_listing_replaces_the_earlier_prediction() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=10)
    join.add_prediction("a", at(0), prediction(100.0, "1"))
    join.add_prediction("b", at(1), prediction(50.0))
    join.add_prediction("a", at(0), prediction(120.0, "2"))  # at-least-once re-delivery
    assert join.backlog == 2
    joined = join.add_sale("a", at(20), 110.0)
    assert joined is not None
    assert joined.prediction == prediction(120.0, "2")
    assert join.backlog == 1
    assert join.add_sale("a", at(21), 110.0) is None  # nothing left to join with
    assert join.counters.joined == 1


def test_a_rescored_listing_moves_to_the_back_of_the_eviction_queue() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=2)
    join.add_prediction("a", at(0), prediction(1.0))
    join.add_prediction("b", at(1), prediction(2.0))
    join.add_prediction("a", at(0), prediction(3.0))
    join.add_prediction("c", at(2), prediction(4.0))  # evicts the oldest entry: "b"
    assert join.counters.evicted == 1
    assert join.add_sale("b", at(3), 1.0) is None
    joined = join.add_sale("a", at(3), 1.0)
    assert joined is not None and joined.prediction == prediction(3.0)


def test_predictions_expire_on_the_sales_watermark() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=100)
    join.add_prediction("old", at(0), prediction(1.0))
    join.add_prediction("new", at(50), prediction(1.0))
    # The predictions stream itself moving on expires nothing.
    join.add_prediction("later", at(500), prediction(1.0))
    assert join.backlog == 3
    assert join.counters.expired_predictions == 0
    # The sales stream at 60 minutes: the horizon is 0, "old" is not before it.
    join.add_sale("x", at(60), 1.0)
    assert join.backlog == 3
    join.add_sale("y", at(60.5), 1.0)  # horizon 0.5 min: "old" goes
    assert join.backlog == 2
    assert join.counters.expired_predictions == 1
    assert join.add_sale("old", at(61), 1.0) is None
    joined = join.add_sale("new", at(61), 1.0)
    assert joined is not None and joined.auction_id == "new"


def test_sales_expire_on_the_predictions_watermark() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=100)
    join.add_sale("s1", at(0), 10.0)
    join.add_sale("s2", at(30), 10.0)
    join.add_sale("s3", at(1000), 10.0)  # sales running ahead expire no sale
    assert join.waiting_sales == 3
    join.add_prediction("p", at(89), prediction(1.0))  # horizon 29: s1 goes
    assert join.waiting_sales == 2
    assert join.counters.expired_sales == 1
    assert join.add_prediction("s1", at(89), prediction(1.0)) is None
    joined = join.add_prediction("s2", at(89), prediction(1.0))
    assert joined is not None and joined.actual == 10.0


def test_expiry_waits_until_every_partition_was_seen() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=100, partitions=(2, 2))
    join.add_prediction("a", at(0), prediction(1.0), partition=0)
    join.add_sale("z1", at(600), 1.0, partition=0)  # partition 1 of sales not seen yet
    assert join.sale_watermark.value is None
    assert join.backlog == 1
    assert join.counters.expired_predictions == 0
    join.add_sale("z2", at(600), 1.0, partition=1)
    assert join.sale_watermark.value == at(600)
    assert join.backlog == 0
    assert join.counters.expired_predictions == 1


def test_a_fast_partition_does_not_expire_the_slow_partitions_entries() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=100, partitions=(2, 2))
    # Listing "slow" sells on sales partition 0, which lags far behind partition 1.
    join.add_prediction("slow", at(0), prediction(100.0), partition=0)
    join.add_prediction("fast", at(1), prediction(100.0), partition=1)
    join.add_sale("s0", at(10), 1.0, partition=0)
    for minute in range(20, 2000, 60):  # partition 1 runs more than a day ahead
        join.add_sale(f"s1-{minute}", at(minute), 1.0, partition=1)
    assert join.sale_watermark.value == at(10)
    assert join.counters.expired_predictions == 0
    joined = join.add_sale("slow", at(40), 80.0, partition=0)
    assert joined is not None and joined.actual == 80.0
    # Once partition 0 catches up, the unsold listing expires.
    join.add_sale("s0-late", at(2100), 1.0, partition=0)
    assert join.counters.expired_predictions == 1
    assert join.backlog == 0


def test_a_fast_predictions_partition_does_not_expire_waiting_sales() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=100, partitions=(2, 1))
    join.add_sale("a", at(30), 90.0)
    join.add_prediction("p0", at(5), prediction(1.0), partition=0)
    join.add_prediction("p1", at(5000), prediction(1.0), partition=1)
    assert join.prediction_watermark.value == at(5)
    assert join.waiting_sales == 1
    joined = join.add_prediction("a", at(10), prediction(100.0), partition=0)
    assert joined is not None and (joined.actual, joined.sold_at) == (90.0, at(30))


def test_max_pending_evicts_the_oldest_predictions() -> None:
    join = PredictionJoin(ttl=timedelta(days=365), max_pending=3)
    for n in range(5):
        join.add_prediction(f"p{n}", at(n), prediction(float(n)))
    assert join.backlog == 3
    assert join.counters.evicted == 2
    joined = [join.add_sale(f"p{n}", at(100), 1.0) for n in range(5)]
    assert [j is not None for j in joined] == [False, False, True, True, True]


def test_max_pending_evicts_the_oldest_sales() -> None:
    join = PredictionJoin(ttl=timedelta(days=365), max_pending=3)
    for n in range(4):
        join.add_sale(f"s{n}", at(100 + n), float(n))
    assert join.waiting_sales == 3
    assert join.counters.evicted == 1
    joined = [join.add_prediction(f"s{n}", at(n), prediction(1.0)) for n in range(4)]
    assert [j.actual if j else None for j in joined] == [None, 1.0, 2.0, 3.0]


def test_counters_add_up() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=4)
    for n in range(6):
        join.add_prediction(f"a{n}", at(n), prediction(1.0))  # a0, a1 evicted
    join.add_sale("a5", at(10), 1.0)  # joined; horizon -50 min expires nothing
    join.add_sale("a4", at(11), 1.0)  # joined
    join.add_sale("zz", at(63.5), 1.0)  # horizon 3.5 min: a2, a3 expire
    join.add_prediction("b", at(64), prediction(1.0))  # horizon 4 min, sale "zz" stays
    join.add_prediction("c", at(124), prediction(1.0))  # horizon 64 min: "zz" expires
    assert join.counters == JoinCounters(
        joined=2, expired_predictions=2, expired_sales=1, evicted=2
    )
    assert (join.backlog, join.waiting_sales) == (2, 0)


def test_complete_until_is_the_slower_streams_watermark() -> None:
    join = PredictionJoin(ttl=TTL, max_pending=100, partitions=(2, 1))
    assert join.complete_until is None
    join.add_prediction("a", at(0), prediction(1.0), partition=0)
    join.add_sale("x", at(5), 1.0)
    assert join.complete_until is None  # predictions partition 1 unseen
    join.add_prediction("b", at(20), prediction(1.0), partition=1)
    assert join.complete_until == at(0)
    join.add_prediction("c", at(30), prediction(1.0), partition=0)
    assert join.complete_until == at(5)  # now the sales side is slower
    join.add_sale("y", at(100), 1.0)
    assert join.complete_until == at(20)
