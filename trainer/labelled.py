"""Recent labelled auctions for retraining: joined from the contract events, split in time.

The features come from ``prices.scored`` (valid listings only) and the labels from
``auctions.sold``; :mod:`trainer.window` reads both back from Kafka. The split is
point-in-time correct: the evaluation slice is the latest ``eval_days`` of sales, and
every training label was known before it began.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

import pandas as pd

from gavel.features import TARGET
from gavel.schemas import LISTING_FIELDS, Sale, ScoredPrice
from gavel.settings import TrainerSettings
from trainer.split import SplitError, TimeSplit, short_part, split_off_validation

log = logging.getLogger(__name__)

SOLD_AT = "sold_at"
MIN_ROWS = 50  # labelled rows each part of a retraining split needs


def labelled_frame(scored: Iterable[ScoredPrice], sales: Iterable[Sale]) -> pd.DataFrame:
    """An auction frame (listing columns, ``sellingprice``) plus ``sold_at``, one row per
    auction that was both priced and sold, sorted by listing time."""
    features = {event.auction_id: event.features for event in scored}  # last wins
    rows = []
    for sale in sales:
        listing = features.get(sale.auction_id)
        if listing is not None:
            rows.append({**listing.model_dump(), TARGET: sale.sellingprice, SOLD_AT: sale.sold_at})
    columns = [*LISTING_FIELDS, TARGET, SOLD_AT]
    frame = pd.DataFrame.from_records(rows, columns=columns)
    frame = frame.drop_duplicates("auction_id", keep="last")
    for column in ("listed_at", SOLD_AT):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.sort_values("listed_at", kind="stable").reset_index(drop=True)


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
    train, validation = split_off_validation(window, validation_share)
    parts = {"training": train, "validation": validation, "evaluation": evaluation}
    short = short_part(parts, MIN_ROWS)
    if short is not None:
        part, rows = short
        raise SplitError(
            f"the {part} part has {rows} labelled rows; need {MIN_ROWS} "
            f"(train_days={config.train_days}, eval_days={config.eval_days})"
        )
    return TimeSplit(
        train=train.drop(columns=[SOLD_AT]),
        validation=validation.drop(columns=[SOLD_AT]),
        test=evaluation.drop(columns=[SOLD_AT]),
        train_until=eval_start,
        test_until=as_of,
    )
