"""A batch's market features, read from the online store in one round trip.

The store (``shell.market_store``, kept by ``gavel market run``) holds, per segment and
day, the as-of vectors of :mod:`gavel.market`: what the segment's sales before that day
add up to. A listing is priced with the vectors of its own UTC day, or, while that day is
not materialised yet, of the latest day that is (``stale_days`` says by how much); its
features are then exactly what :func:`gavel.market.market_features` computes offline as
of that day, which the outputs record.

The worker never waits long for the store and never fails for it: a read that fails (or
times out, after the store's short socket timeout) prices the batch without market
features, marks it ``unavailable`` and skips the store for ``retry_after_s`` so that a
dead Redis does not cost a timeout per batch.

>>> reader = MarketReader(None)
>>> reader.read([]).source
'off'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from gavel.market import DAY_SECONDS, MARKET_FEATURES, read_market_features
from gavel.schemas import Listing

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5.0
_EPOCH_DAY = pd.Timestamp("1970-01-01", tz="UTC")


class StoreRead(Protocol):
    @property
    def vectors(self) -> Sequence[np.ndarray | None]: ...

    @property
    def materialised_day(self) -> int | None: ...


class MarketSource(Protocol):
    """The read side of the online store: one pipelined round trip per call."""

    def read(self, pairs: Sequence[tuple[str, int]]) -> StoreRead: ...


Source = Literal["store", "unavailable", "off"]


@dataclass(frozen=True)
class BatchMarket:
    """What the store gave a batch: features by name (None when there are none), and per
    listing the day they are as of (day numbers since 1970) and how stale that day is."""

    source: Source
    columns: dict[str, np.ndarray] | None = None
    as_of: np.ndarray | None = None
    stale_days: np.ndarray | None = None
    read_s: float = 0.0
    round_trips: int = 0
    error: str | None = field(default=None, compare=False)

    def rows(self, index: Sequence[int]) -> BatchMarket:
        """The same read for a subset of the batch's listings (by position)."""
        if self.columns is None or self.as_of is None or self.stale_days is None:
            return self
        picked = np.asarray(index, dtype=np.int64)
        return BatchMarket(
            self.source,
            {name: values[picked] for name, values in self.columns.items()},
            self.as_of[picked],
            self.stale_days[picked],
            self.read_s,
            self.round_trips,
        )


def listing_days(listings: Sequence[Listing]) -> np.ndarray:
    """Each listing's UTC day, as days since 1970 (what the store's keys use)."""
    return np.array(
        [int(listing.listed_at.timestamp()) // DAY_SECONDS for listing in listings], dtype=np.int64
    )


class MarketReader:
    """Market features of a batch, from ``store`` (None: no store, features are off)."""

    def __init__(
        self,
        store: MarketSource | None,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.retry_after_s = retry_after_s
        self.clock = clock
        self.materialised_day: int | None = None  # the latest the store said it has
        self._skip_until = 0.0

    def read(self, listings: Sequence[Listing]) -> BatchMarket:
        """Never raises: a failing store gives ``unavailable`` (no features)."""
        if self.store is None:
            return BatchMarket("off")
        if not listings:
            return BatchMarket("store", {n: np.empty(0) for n in MARKET_FEATURES})
        if self.clock() < self._skip_until:
            return BatchMarket("unavailable", error="skipped after a failed read")
        started = time.perf_counter()
        try:
            return self._read(listings, started)
        except Exception as exc:
            self._skip_until = self.clock() + self.retry_after_s
            reason = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("market store unreadable (%s); pricing without market features", reason)
            return BatchMarket("unavailable", read_s=time.perf_counter() - started, error=reason)

    def _read(self, listings: Sequence[Listing], started: float) -> BatchMarket:
        days = listing_days(listings)
        frame = pd.DataFrame(
            {
                "make": [listing.make for listing in listings],
                "model": [listing.model for listing in listings],
                "year": [listing.year for listing in listings],
                "body": [listing.body for listing in listings],
            }
        )
        round_trips = 0
        for _ in range(2):  # a second trip only when the store is behind the cached day
            as_of = (
                days if self.materialised_day is None else np.minimum(days, self.materialised_day)
            )
            answer: list[Any] = []

            def fetch(pairs: Sequence[tuple[str, int]], answer: list[Any] = answer) -> Any:
                read = self.store.read(pairs)  # type: ignore[union-attr]  # checked by read()
                answer.append(read)
                return read.vectors

            frame["listed_at"] = _EPOCH_DAY + pd.to_timedelta(as_of, unit="D")
            features = read_market_features(frame, fetch)
            round_trips += 1
            materialised = answer[0].materialised_day if answer else self.materialised_day
            self.materialised_day = materialised
            if materialised is None or (as_of <= materialised).all():
                break
        if materialised is None:  # nothing materialised yet: no memory to give
            features = features.assign(**{n: np.nan for n in MARKET_FEATURES})
        return BatchMarket(
            "store",
            {name: features[name].to_numpy(dtype=float) for name in MARKET_FEATURES},
            as_of if materialised is not None else np.full(len(days), -1, dtype=np.int64),
            days - as_of,
            time.perf_counter() - started,
            round_trips,
        )
