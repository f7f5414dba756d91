"""The ``prices.scored`` value of a priced listing, written straight from what was validated.

``ScoredPrice(...).to_json_bytes()`` validated every listing a second time (it is a field
of ``ScoredPrice``) right after :func:`stream_app.validation.parse_listing` had validated
it. Here the fields a batch shares (model, version, source, ``scored_at``) are validated
once per batch by the contract itself, and each event's JSON is written by orjson from
the listing's validated fields: the same bytes as ``ScoredPrice.to_json_bytes()`` (a
test holds them equal), at a fraction of the cost.

>>> from datetime import datetime, UTC
>>> listing = Listing(auction_id="a1", listed_at=datetime(2015, 1, 5, tzinfo=UTC),
...                   year=2012, make="Ford", model="Fusion")
>>> shared = BatchFields.validated("price", "3", "registry", datetime(2015, 1, 5, 1, tzinfo=UTC))
>>> value = scored_json(listing, 9876.5, shared, ingested_at=None)
>>> ScoredPrice.model_validate_json(value).predicted_price
9876.5
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from gavel.schemas import Listing, ScoredPrice

_PLACEHOLDER = Listing(
    auction_id="placeholder",
    listed_at=datetime(2015, 1, 1, tzinfo=UTC),
    year=2015,
    make="placeholder",
    model="placeholder",
)


@dataclass(frozen=True)
class BatchFields:
    """The fields every scored price of a batch shares, validated by the contract."""

    model_name: str
    model_version: str
    model_source: str
    scored_at: datetime

    @classmethod
    def validated(
        cls, model_name: str, model_version: str, model_source: str, scored_at: datetime
    ) -> BatchFields:
        """Raises what ``ScoredPrice(...)`` would raise for these values (say, an unknown
        ``model_source``), and keeps them as it would (``scored_at`` in UTC)."""
        check = ScoredPrice.model_validate(
            {
                "auction_id": "placeholder",
                "predicted_price": 0.0,
                "model_name": model_name,
                "model_version": model_version,
                "listed_at": scored_at,
                "scored_at": scored_at,
                "features": _PLACEHOLDER,
                "model_source": model_source,
            }
        )
        return cls(check.model_name, check.model_version, check.model_source, check.scored_at)


@dataclass(frozen=True)
class Extras:
    """What a price adds to its listing: the market used, the missing inputs, the interval.

    ``market`` is the JSON of :class:`gavel.schemas.MarketUsed` (``as_of`` a date), made
    from what the store returned; bounds are rounded to cents like the price.
    """

    market: dict[str, object] | None = None
    missing_inputs: list[str] = field(default_factory=list)
    price_low: float | None = None
    price_high: float | None = None
    interval_level: float | None = None


_NONE = Extras()


def scored_json(
    listing: Listing,
    price: float,
    shared: BatchFields,
    ingested_at: datetime | None,
    extras: Extras = _NONE,
) -> bytes:
    """The JSON ``ScoredPrice`` of ``listing`` priced at ``price`` (rounded to cents).

    ``listing`` must be validated (a ``Listing`` from ``model_validate``), and
    ``ingested_at`` an aware UTC datetime or None (:func:`stream_app.batch.broker_time`):
    nothing here checks them again. Raises ``orjson.JSONEncodeError`` for what cannot be
    written (such as text with lone surrogates).
    """
    return orjson.dumps(
        {
            "auction_id": listing.auction_id,
            "predicted_price": round(float(price), 2),
            "model_name": shared.model_name,
            "model_version": shared.model_version,
            "listed_at": listing.listed_at,
            "scored_at": shared.scored_at,
            "ingested_at": ingested_at,
            # A validated listing's __dict__ is its fields, in order, as validated.
            "features": listing.__dict__,
            "model_source": shared.model_source,
            "market": extras.market,
            "missing_inputs": extras.missing_inputs,
            "price_low": _cents(extras.price_low),
            "price_high": _cents(extras.price_high),
            "interval_level": extras.interval_level,
        },
        option=orjson.OPT_UTC_Z,
    )


def _cents(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)
