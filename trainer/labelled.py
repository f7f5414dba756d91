"""Recent labelled auctions for retraining: read back from Kafka and split in time.

The features come from ``prices.scored`` (valid listings only) and the labels from
``auctions.sold``. The split is point-in-time correct: the evaluation slice is the
latest ``eval_days`` of sales, and every training label was known before it began.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
import pandas as pd
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from gavel.kafka import consumer_config
from gavel.schemas import LISTING_FIELDS
from gavel.settings import Settings, TrainerSettings
from gavel.topics import AUCTIONS_SOLD, PRICES_SCORED
from producers.sources.frame import TARGET
from trainer.split import SplitError, TimeSplit

log = logging.getLogger(__name__)

SOLD_AT = "sold_at"


def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Every readable value of ``topic`` up to its current end."""
    name = settings.topic(topic)
    consumer = Consumer(
        consumer_config(settings, f"{settings.group('trainer-reader')}-{uuid.uuid4().hex[:6]}")
    )
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        ends: dict[int, int] = {}
        assignment = []
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)
            if high > low:
                ends[partition] = high
                assignment.append(TopicPartition(name, partition, OFFSET_BEGINNING))
        if not assignment:
            return []
        consumer.assign(assignment)
        values: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(5000, timeout=0.5):
                if message.error():
                    continue
                try:
                    values.append(orjson.loads(message.value()))
                except orjson.JSONDecodeError:
                    continue
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
        return values
    finally:
        consumer.close()


def labelled_frame(scored: list[dict[str, Any]], sales: list[dict[str, Any]]) -> pd.DataFrame:
    """An auction frame (listing columns, ``sellingprice``) plus ``sold_at``, one row per
    auction that was both priced and sold, sorted by listing time."""
    features = {event["auction_id"]: event["features"] for event in scored}  # last wins
    rows = []
    for sale in sales:
        listing = features.get(sale["auction_id"])
        if listing is not None:
            rows.append({**listing, TARGET: sale["sellingprice"], SOLD_AT: sale["sold_at"]})
    columns = [*LISTING_FIELDS, TARGET, SOLD_AT]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame = frame.drop_duplicates("auction_id", keep="last")
    for column in ("listed_at", SOLD_AT):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    return frame.sort_values("listed_at", kind="stable").reset_index(drop=True)


def read_labelled(settings: Settings) -> pd.DataFrame:
    frame = labelled_frame(read_topic(settings, PRICES_SCORED), read_topic(settings, AUCTIONS_SOLD))
    log.info("read %d labelled auctions back from Kafka", len(frame))
    return frame


def new_labels(frame: pd.DataFrame, since: datetime | None) -> int:
    """Labelled sales after ``since`` (all of them when None)."""
    if since is None:
        return len(frame)
    return int((frame[SOLD_AT] > pd.Timestamp(since)).sum())


def retraining_split(
    frame: pd.DataFrame, config: TrainerSettings, validation_share: float = 0.15, seed: int = 0
) -> TimeSplit:
    """Evaluation = sales in the last ``eval_days``; training = sales in the ``train_days``
    before that (plus an optional blend of older rows); validation = the training
    window's latest share, for early stopping."""
    if frame.empty:
        raise SplitError("no labelled auctions to train on yet")
    as_of = frame[SOLD_AT].max()
    eval_start = as_of - timedelta(days=config.eval_days)
    train_start = eval_start - timedelta(days=config.train_days)
    sold = frame[SOLD_AT]
    evaluation = frame.loc[sold >= eval_start]
    window = frame.loc[(sold >= train_start) & (sold < eval_start)]
    if config.blend_share > 0:
        older = frame.loc[sold < train_start]
        n = min(len(older), int(len(window) * config.blend_share))
        window = pd.concat([older.sample(n, random_state=seed), window]) if n else window
    window = window.sort_values("listed_at", kind="stable")
    n_validation = max(round(len(window) * validation_share), 1)
    train, validation = window.iloc[:-n_validation], window.iloc[-n_validation:]
    for part, rows in (("training", train), ("validation", validation), ("evaluation", evaluation)):
        if len(rows) < 50:
            raise SplitError(
                f"the {part} part has {len(rows)} labelled rows; need 50 "
                f"(train_days={config.train_days}, eval_days={config.eval_days})"
            )
    return TimeSplit(
        train=train.drop(columns=[SOLD_AT]),
        validation=validation.drop(columns=[SOLD_AT]),
        test=evaluation.drop(columns=[SOLD_AT]),
        train_until=eval_start,
        test_until=as_of,
    )
