"""Joining predictions with sale outcomes by auction id, in bounded state.

A prediction waits for its sale until the *sales* stream has moved ``ttl`` past its
listing time (listings that never sell expire); a sale that arrives first waits until
the *predictions* stream has moved ``ttl`` past its sale time. A stream's progress is
its watermark: the slowest of its partitions' latest event times, known once every
partition has been seen (``partitions`` gives both streams' counts). So one topic, or
one partition, running ahead of the others (a lagging worker) loses nothing. Neither
side ever holds more than ``max_pending`` entries: the oldest go first.

>>> from datetime import datetime, timedelta, UTC
>>> join = PredictionJoin(ttl=timedelta(hours=1), max_pending=10)
>>> t0 = datetime(2015, 1, 5, 10, tzinfo=UTC)
>>> join.add_prediction("a", t0, {"predicted_price": 100.0})
>>> join.add_sale("a", t0 + timedelta(minutes=30), 90.0).actual
90.0
>>> join.backlog
0
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from monitor.ordering import PartitionWatermark
from monitor.records import ScoredRow


class Joined(NamedTuple):
    """A prediction with its sale (a named tuple: one is made per sale)."""

    auction_id: str
    prediction: ScoredRow
    actual: float
    sold_at: datetime


@dataclass
class JoinCounters:
    joined: int = 0
    expired_predictions: int = 0
    expired_sales: int = 0
    evicted: int = 0


class PredictionJoin:
    def __init__(
        self, ttl: timedelta, max_pending: int, partitions: tuple[int, int] = (1, 1)
    ) -> None:
        self.ttl = ttl
        self.max_pending = max_pending
        self._predictions: OrderedDict[str, tuple[datetime, ScoredRow]] = OrderedDict()
        self._sales: OrderedDict[str, tuple[datetime, float]] = OrderedDict()
        predictions, sales = partitions
        self.prediction_watermark = PartitionWatermark(predictions)  # over listed_at
        self.sale_watermark = PartitionWatermark(sales)  # over sold_at
        self.counters = JoinCounters()

    @property
    def backlog(self) -> int:
        """Predictions waiting for their sale."""
        return len(self._predictions)

    @property
    def waiting_sales(self) -> int:
        """Sales waiting for their prediction."""
        return len(self._sales)

    @property
    def complete_until(self) -> datetime | None:
        """Every join still to come has ``sold_at`` after this time.

        Future sales come after the sales watermark, and a future prediction's sale comes
        after its listing, hence after the predictions watermark.
        """
        predictions, sales = self.prediction_watermark.value, self.sale_watermark.value
        if predictions is None or sales is None:
            return None
        return min(predictions, sales)

    def add_prediction(
        self, auction_id: str, listed_at: datetime, prediction: ScoredRow, partition: int = 0
    ) -> Joined | None:
        watermark = self.prediction_watermark.update(partition, listed_at)
        if watermark is not None:
            self._expire(self._sales, watermark - self.ttl, "expired_sales")
        sale = self._sales.pop(auction_id, None)
        if sale is not None:
            return self._joined(auction_id, prediction, sale[1], sale[0])
        # A re-scored listing (at-least-once) replaces its earlier prediction.
        self._predictions.pop(auction_id, None)
        self._predictions[auction_id] = (listed_at, prediction)
        self._bound(self._predictions)
        return None

    def add_sale(
        self, auction_id: str, sold_at: datetime, actual: float, partition: int = 0
    ) -> Joined | None:
        watermark = self.sale_watermark.update(partition, sold_at)
        if watermark is not None:
            self._expire(self._predictions, watermark - self.ttl, "expired_predictions")
        pending = self._predictions.pop(auction_id, None)
        if pending is not None:
            return self._joined(auction_id, pending[1], actual, sold_at)
        self._sales[auction_id] = (sold_at, actual)
        self._bound(self._sales)
        return None

    def _joined(
        self, auction_id: str, prediction: ScoredRow, actual: float, sold_at: datetime
    ) -> Joined:
        self.counters.joined += 1
        return Joined(auction_id, prediction, actual, sold_at)

    def _expire(self, state: OrderedDict[str, Any], horizon: datetime, counter: str) -> None:
        # Arrival order is close to event order: stop at the first entry inside the horizon.
        expired = 0
        for event_time, _ in state.values():
            if event_time >= horizon:
                break
            expired += 1
        for _ in range(expired):
            state.popitem(last=False)
        if expired:
            setattr(self.counters, counter, getattr(self.counters, counter) + expired)

    def _bound(self, state: OrderedDict[str, Any]) -> None:
        while len(state) > self.max_pending:
            state.popitem(last=False)
            self.counters.evicted += 1
