"""Event schemas: the JSON values on every topic.

All timestamps are timezone-aware UTC. Listings carry everything known
before the hammer falls; the sale price arrives later as a ``Sale``.

>>> from datetime import datetime, timezone
>>> listing = Listing(auction_id="a1", listed_at=datetime(2015, 1, 5, tzinfo=timezone.utc),
...                   year=2012, make="Ford", model="Fusion", condition=3.5, odometer=41000)
>>> listing.age_years
3
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gavel.times import as_utc

MIN_MODEL_YEAR = 1950
MAX_ODOMETER = 1_000_000.0
MIN_CONDITION = 1.0
MAX_CONDITION = 5.0
# Event times outside this range are not auctions but bugs or attacks; they also break
# pandas (nanoseconds end in 2262) and datetime arithmetic near years 1 and 9999.
EARLIEST_EVENT_TIME = datetime(1990, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)


def _plausible_event_time(value: datetime) -> datetime:
    if not EARLIEST_EVENT_TIME <= value < LATEST_EVENT_TIME:
        raise ValueError(
            f"{value.isoformat()} is outside the plausible range "
            f"[{EARLIEST_EVENT_TIME:%Y-%m-%d}, {LATEST_EVENT_TIME:%Y-%m-%d})"
        )
    return value


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
"""A datetime in UTC; a naive one is read as UTC (see :func:`gavel.times.as_utc`)."""
EventTime = Annotated[datetime, AfterValidator(as_utc), AfterValidator(_plausible_event_time)]
"""A UTC datetime within [EARLIEST_EVENT_TIME, LATEST_EVENT_TIME): when an auction happened."""
OptionalText = Annotated[str | None, Field(max_length=200)]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


_ALERT_IDS = uuid.UUID("6f1c2f0e-8d4b-5a7e-9c3d-0b9a4e2f7d15")  # the uuid5 namespace of alert ids


def alert_id_for(
    kind: str,
    model_name: str,
    model_version: str,
    window_start: datetime,
    window_end: datetime,
    detector: str,
) -> str:
    """The id of a drift alert, derived from what identifies its episode: the kind, the
    model version and the bounds of the window that opened it (and the detector that saw
    it). A monitor that replays a window after a crash re-announces the same id, which
    the trainer then ignores as a duplicate.

    >>> t = datetime(2015, 5, 1, tzinfo=UTC)
    >>> alert_id_for("performance", "m", "1", t, t, "window") == alert_id_for(
    ...     "performance", "m", "1", t, t, "window")
    True
    """
    name = "|".join(
        (
            str(kind),
            model_name,
            model_version,
            as_utc(window_start).isoformat(),
            as_utc(window_end).isoformat(),
            detector,
        )
    )
    return uuid.uuid5(_ALERT_IDS, name).hex


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()


class Listing(_Event):
    """A car put up for auction (topic ``auctions.listed``, key ``auction_id``).

    Condition is on the 1.0-5.0 scale; loaders convert the 1-49 variant.
    Optional fields are ``None`` when unknown, never a placeholder.
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)

    auction_id: str = Field(min_length=1, max_length=128)
    listed_at: EventTime
    year: int = Field(ge=MIN_MODEL_YEAR)
    make: str = Field(min_length=1, max_length=60)
    model: str = Field(min_length=1, max_length=80)
    trim: OptionalText = None
    body: OptionalText = None
    transmission: Literal["automatic", "manual"] | None = None
    state: str | None = Field(None, min_length=2, max_length=2)
    condition: float | None = Field(None, ge=MIN_CONDITION, le=MAX_CONDITION)
    odometer: float | None = Field(None, ge=0, le=MAX_ODOMETER)
    color: OptionalText = None
    interior: OptionalText = None
    seller: OptionalText = None
    mmr: float | None = Field(None, gt=0, le=1_000_000)
    vin: str | None = Field(None, max_length=32)

    @field_validator("year")
    @classmethod
    def _year_not_in_future(cls, year: int, info: ValidationInfo) -> int:
        listed_at = info.data.get("listed_at")
        if listed_at is not None and year > listed_at.year + 1:
            raise ValueError(f"model year {year} is not on sale yet at {listed_at:%Y-%m-%d}")
        return year

    @property
    def age_years(self) -> int:
        return max(self.listed_at.year - self.year, 0)


LISTING_FIELDS: tuple[str, ...] = tuple(Listing.model_fields)


class Sale(_Event):
    """The outcome of an auction (topic ``auctions.sold``, key ``auction_id``)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)

    auction_id: str = Field(min_length=1, max_length=128)
    sold_at: EventTime
    sellingprice: float = Field(gt=0)


class MarketUsed(BaseModel):
    """The market memory a price used: the recent-sale features the model read, and how
    fresh they were (:mod:`gavel.market`)."""

    model_config = ConfigDict(extra="ignore")

    source: Literal["store", "unavailable"] = Field(
        description="'store': read from the online store; 'unavailable': the store did not "
        "answer, so the price was made without market features (all missing)."
    )
    as_of: date | None = Field(
        None, description="The day the features are as of: sales strictly before it count."
    )
    stale_days: int | None = Field(
        None, description="Days between the listing's day and ``as_of`` (0: up to date)."
    )
    features: dict[str, float | None] = Field(
        default_factory=dict,
        description="The market features the model reads, by name (null: no sale informs it).",
    )


class ScoredPrice(_Event):
    """A priced listing (topic ``prices.scored``, key ``auction_id``).

    It repeats the listing's features so that downstream consumers need no join, and
    records the market features the price used, which inputs were missing, and the
    price's interval (when the model has them).
    """

    auction_id: str
    predicted_price: float
    model_name: str
    model_version: str
    listed_at: UtcDatetime
    scored_at: UtcDatetime
    ingested_at: UtcDatetime | None = Field(
        None, description="When the listing reached auctions.listed (its Kafka timestamp)."
    )
    features: Listing
    model_source: Literal["registry", "cache"] = Field(
        "registry",
        description="'cache': priced by the worker's local copy while the registry was down.",
    )
    market: MarketUsed | None = Field(
        None, description="The market memory used; null for a model that reads none."
    )
    missing_inputs: list[str] = Field(
        default_factory=list,
        description="Optional listing fields the model reads that this listing lacked.",
    )
    price_low: float | None = Field(None, description="Lower bound of the price interval.")
    price_high: float | None = Field(None, description="Upper bound of the price interval.")
    interval_level: float | None = Field(
        None, description="Nominal coverage of [price_low, price_high] (0.8: 80%)."
    )


class DeadLetterReason(StrEnum):
    NOT_JSON = "not_json"
    SCHEMA = "schema"
    OUT_OF_RANGE = "out_of_range"
    SCORING_FAILED = "scoring_failed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    OUTPUT_FAILED = "output_failed"


class DeadLetter(_Event):
    """An event that could not be priced (topic ``auctions.deadletter``)."""

    reason: DeadLetterReason
    detail: str
    errors: list[dict[str, Any]] = Field(default_factory=list)
    source_topic: str
    partition: int
    offset: int
    key: str | None = None
    raw_payload: str = Field(
        description="The original bytes, UTF-8 decoded with replacement; "
        "cut to a bound so that a dead letter always fits on the broker."
    )
    payload_bytes: int = Field(0, description="Size of the original payload.")
    payload_sha256: str | None = Field(None, description="Hash of the original payload.")
    payload_truncated: bool = False
    dead_lettered_at: UtcDatetime = Field(default_factory=utc_now)


class DriftKind(StrEnum):
    DATA = "data"
    PREDICTION = "prediction"
    PERFORMANCE = "performance"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


class FeatureDrift(BaseModel):
    feature: str
    score: float
    threshold: float
    stattest: str
    drifted: bool


class DriftAlert(_Event):
    """A drift episode detected by the monitor (topic ``drift.alerts``, key = kind).

    ``alert_id`` defaults to :func:`alert_id_for` of the alert's own fields.
    """

    alert_id: str = ""
    kind: DriftKind
    severity: Severity
    window_start: UtcDatetime
    window_end: UtcDatetime
    window_size: int
    model_name: str
    model_version: str
    drifted_features: list[FeatureDrift] = Field(default_factory=list)
    share_drifted: float | None = None
    mape: float | None = None
    reference_mape: float | None = None
    detected_at: UtcDatetime = Field(default_factory=utc_now)
    report_path: str | None = None
    detector: str = "window"

    @model_validator(mode="after")
    def _derive_id(self) -> DriftAlert:
        if not self.alert_id:
            self.alert_id = alert_id_for(
                self.kind,
                self.model_name,
                self.model_version,
                self.window_start,
                self.window_end,
                self.detector,
            )
        return self


class ModelAction(StrEnum):
    PROMOTED = "promoted"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"


class ModelUpdate(_Event):
    """A model lifecycle event (topic ``models.updates``, key = model name)."""

    event_id: str = Field(default_factory=new_id)
    action: ModelAction
    model_name: str
    version: str
    champion_version: str | None = Field(None, description="The champion after this event.")
    previous_version: str | None = None
    reason: str = ""
    metrics: dict[str, float] = Field(default_factory=dict)
    alert_id: str | None = None
    at: UtcDatetime = Field(default_factory=utc_now)
