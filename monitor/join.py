"""Joining predictions with sale outcomes by auction id, in bounded state.

A prediction waits for its sale at most ``ttl`` of event time (listings that never
sell expire) and the state never holds more than ``max_pending`` entries per side:
the oldest are dropped first. A sale that arrives before its prediction waits too.

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
from typing import Any


@dataclass(frozen=True)
class Joined:
    auction_id: str
    prediction: dict[str, Any]  # the ScoredPrice value
    actual: float
    sold_at: datetime


@dataclass
class JoinCounters:
    joined: int = 0
    expired_predictions: int = 0
    expired_sales: int = 0
    evicted: int = 0


class PredictionJoin:
    def __init__(self, ttl: timedelta, max_pending: int) -> None:
        self.ttl = ttl
        self.max_pending = max_pending
        self._predictions: OrderedDict[str, tuple[datetime, dict[str, Any]]] = OrderedDict()
        self._sales: OrderedDict[str, tuple[datetime, float]] = OrderedDict()
        self._watermark: datetime | None = None
        self.counters = JoinCounters()

    @property
    def backlog(self) -> int:
        """Predictions waiting for their sale."""
        return len(self._predictions)

    @property
    def waiting_sales(self) -> int:
        return len(self._sales)

    def add_prediction(
        self, auction_id: str, listed_at: datetime, prediction: dict[str, Any]
    ) -> Joined | None:
        self._advance(listed_at)
        sale = self._sales.pop(auction_id, None)
        if sale is not None:
            return self._joined(auction_id, prediction, sale[1], sale[0])
        # A re-scored listing (at-least-once) replaces its earlier prediction.
        self._predictions.pop(auction_id, None)
        self._predictions[auction_id] = (listed_at, prediction)
        self._bound(self._predictions)
        return None

    def add_sale(self, auction_id: str, sold_at: datetime, actual: float) -> Joined | None:
        self._advance(sold_at)
        pending = self._predictions.pop(auction_id, None)
        if pending is not None:
            return self._joined(auction_id, pending[1], actual, sold_at)
        self._sales[auction_id] = (sold_at, actual)
        self._bound(self._sales)
        return None

    def _joined(
        self, auction_id: str, prediction: dict[str, Any], actual: float, sold_at: datetime
    ) -> Joined:
        self.counters.joined += 1
        return Joined(auction_id, prediction, actual, sold_at)

    def _advance(self, event_time: datetime) -> None:
        if self._watermark is not None and event_time <= self._watermark:
            return
        self._watermark = event_time
        horizon = event_time - self.ttl
        # Entries are kept in arrival order, which is close to event order: stop at the
        # first one still inside the TTL.
        while self._predictions:
            auction_id, (listed_at, _) = next(iter(self._predictions.items()))
            if listed_at >= horizon:
                break
            del self._predictions[auction_id]
            self.counters.expired_predictions += 1
        while self._sales:
            auction_id, (sold_at, _) = next(iter(self._sales.items()))
            if sold_at >= horizon:
                break
            del self._sales[auction_id]
            self.counters.expired_sales += 1

    def _bound(self, state: OrderedDict[str, Any]) -> None:
        while len(state) > self.max_pending:
            state.popitem(last=False)
            self.counters.evicted += 1
