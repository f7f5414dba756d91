"""Tests for trainer.labelled: joining scored listings with sales, and the retraining split."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pytest

from gavel.features import TARGET
from gavel.schemas import LISTING_FIELDS, Listing, Sale, ScoredPrice
from gavel.settings import TrainerSettings
from trainer.labelled import SOLD_AT, labelled_frame, new_labels, retraining_split
from trainer.split import SplitError

T0 = datetime(2015, 1, 1, tzinfo=UTC)


def scored(
    auction_id: str, listed_at: datetime, version: str = "1", **features: Any
) -> ScoredPrice:
    """A ``prices.scored`` event as the worker writes it."""
    listing = Listing(
        auction_id=auction_id,
        listed_at=listed_at,
        year=features.pop("year", 2012),
        make=features.pop("make", "Ford"),
        model=features.pop("model", "Fusion"),
        **features,
    )
    event = ScoredPrice(
        auction_id=auction_id,
        predicted_price=10_000.0,
        model_name="m",
        model_version=version,
        listed_at=listed_at,
        scored_at=listed_at + timedelta(seconds=1),
        features=listing,
    )
    return event


def sale(auction_id: str, sold_at: datetime | str, price: float = 9000.0) -> Sale:
    sold = sold_at if isinstance(sold_at, str) else sold_at.isoformat()
    return Sale.model_validate({"auction_id": auction_id, "sold_at": sold, "sellingprice": price})


# --- labelled_frame ------------------------------------------------------------------------


def test_joins_scored_listings_with_their_sales_by_auction_id() -> None:
    events = [
        scored("a", T0, odometer=10_000.0),
        scored("b", T0 + timedelta(hours=1), odometer=20_000.0),
    ]
    sales = [sale("b", T0 + timedelta(days=2), 7000), sale("a", T0 + timedelta(days=1), 8000)]
    frame = labelled_frame(events, sales)

    assert list(frame["auction_id"]) == ["a", "b"]
    assert list(frame[TARGET]) == [8000, 7000]
    assert list(frame["odometer"]) == [10_000.0, 20_000.0]
    assert list(frame[SOLD_AT]) == [
        pd.Timestamp(T0 + timedelta(days=1)),
        pd.Timestamp(T0 + timedelta(days=2)),
    ]


def test_columns_are_the_listing_fields_then_price_then_sold_at() -> None:
    frame = labelled_frame([scored("a", T0)], [sale("a", T0 + timedelta(days=1))])
    assert list(frame.columns) == [*LISTING_FIELDS, TARGET, SOLD_AT]
    assert frame.loc[0, "make"] == "Ford" and frame.loc[0, "year"] == 2012
    assert pd.isna(frame.loc[0, "mmr"])  # unknown stays missing, not a placeholder


def test_unsold_and_unscored_auctions_are_dropped() -> None:
    events = [scored("priced-and-sold", T0), scored("never-sold", T0)]
    sales = [sale("priced-and-sold", T0 + timedelta(days=1)), sale("never-priced", T0)]
    frame = labelled_frame(events, sales)
    assert list(frame["auction_id"]) == ["priced-and-sold"]


def test_a_rescored_listing_keeps_its_last_features() -> None:
    events = [
        scored("a", T0, version="1", odometer=50_000.0),
        scored("b", T0 + timedelta(hours=1)),
        scored("a", T0, version="2", odometer=51_000.0, condition=4.0),
    ]
    frame = labelled_frame(events, [sale("a", T0 + timedelta(days=1)), sale("b", T0)])
    row = frame.set_index("auction_id").loc["a"]
    assert row["odometer"] == 51_000.0 and row["condition"] == 4.0
    assert frame["auction_id"].is_unique and len(frame) == 2


def test_a_redelivered_sale_gives_one_row() -> None:
    sales = [sale("a", T0 + timedelta(days=1), 8000), sale("a", T0 + timedelta(days=1), 8000)]
    frame = labelled_frame([scored("a", T0)], sales)
    assert len(frame) == 1


def test_times_are_utc_datetimes_whatever_the_offset_in_the_text() -> None:
    events = [scored("a", T0), scored("b", T0 + timedelta(hours=1))]
    sales = [
        sale("a", "2015-01-03T12:00:00Z"),
        sale("b", "2015-01-03T14:00:00+02:00"),
    ]
    frame = labelled_frame(events, sales)
    for column in ("listed_at", SOLD_AT):
        assert isinstance(frame[column].dtype, pd.DatetimeTZDtype)
        assert str(frame[column].dt.tz) == "UTC"
    assert list(frame[SOLD_AT]) == [pd.Timestamp("2015-01-03T12:00Z")] * 2
    assert frame.loc[0, "listed_at"] == pd.Timestamp(T0)


def test_rows_are_sorted_by_listing_time_not_by_sale_order() -> None:
    events = [scored(name, T0 + timedelta(hours=hour)) for name, hour in (("c", 3), ("a", 1))]
    events.append(scored("b", T0 + timedelta(hours=2)))
    sales = [sale(x, T0 + timedelta(days=d)) for x, d in (("b", 1), ("c", 2), ("a", 3))]
    frame = labelled_frame(events, sales)
    assert list(frame["auction_id"]) == ["a", "b", "c"]
    assert frame["listed_at"].is_monotonic_increasing
    assert list(frame.index) == [0, 1, 2]


def test_no_events_give_an_empty_frame_with_the_columns() -> None:
    for events, sales in (([], []), ([scored("a", T0)], []), ([], [sale("a", T0)])):
        frame = labelled_frame(events, sales)
        assert frame.empty
        assert list(frame.columns) == [*LISTING_FIELDS, TARGET, SOLD_AT]


# --- new_labels ----------------------------------------------------------------------------


def test_new_labels_counts_sales_after_a_time() -> None:
    events = [scored(str(i), T0) for i in range(4)]
    sales = [sale(str(i), T0 + timedelta(days=i)) for i in range(4)]
    frame = labelled_frame(events, sales)
    assert new_labels(frame, None) == 4
    assert new_labels(frame, T0 - timedelta(days=1)) == 4
    assert new_labels(frame, T0 + timedelta(days=1)) == 2  # strictly after
    assert new_labels(frame, T0 + timedelta(days=1, seconds=-1)) == 3
    assert new_labels(frame, T0 + timedelta(days=10)) == 0
    assert isinstance(new_labels(frame, T0), int)


def test_new_labels_of_an_empty_frame() -> None:
    frame = labelled_frame([], [])
    assert new_labels(frame, None) == 0
    assert new_labels(frame, T0) == 0


# --- retraining_split ----------------------------------------------------------------------


@cache
def history(days: float, per_day: int = 40, seed: int = 0) -> pd.DataFrame:
    """A labelled frame with sales every ``24 / per_day`` hours over ``days`` days; each car
    was listed 0-4 days before it sold, so listing order differs from sale order.

    Cached: callers must not change the frame."""
    rng = np.random.default_rng(seed)
    events, sales = [], []
    for i in range(int(days * per_day)):
        sold_time = T0 + timedelta(days=4, hours=i * 24 / per_day)
        listed_at = sold_time - timedelta(hours=float(rng.uniform(0, 96)))
        events.append(scored(f"a{i:05d}", listed_at, odometer=float(i)))
        sales.append(sale(f"a{i:05d}", sold_time, 5000 + i))
    return labelled_frame(events, sales)


def sold_at(frame: pd.DataFrame, part: pd.DataFrame) -> pd.Series:
    """The sale times of ``part`` (which has no sold_at column), looked up by auction id."""
    assert SOLD_AT not in part.columns
    return frame.set_index("auction_id").loc[part["auction_id"], SOLD_AT]


def settings(**changes: object) -> TrainerSettings:
    return TrainerSettings(**{"train_days": 10.0, "eval_days": 2.0, **changes})


def test_evaluation_is_the_last_eval_days_of_sales() -> None:
    frame = history(30)
    split = retraining_split(frame, settings())
    as_of = frame[SOLD_AT].max()
    eval_start = as_of - timedelta(days=2)

    expected = frame.loc[frame[SOLD_AT] >= eval_start, "auction_id"]
    assert set(split.test["auction_id"]) == set(expected)
    assert len(split.test) == 2 * 40 + 1  # both ends of the two days
    assert split.test_until == as_of
    assert split.train_until == eval_start


def test_training_labels_were_all_known_before_the_evaluation_began() -> None:
    frame = history(30)
    split = retraining_split(frame, settings())
    learnt = pd.concat([split.train, split.validation])
    eval_start = frame[SOLD_AT].max() - timedelta(days=2)

    assert sold_at(frame, learnt).max() < sold_at(frame, split.test).min()
    assert sold_at(frame, learnt).max() < eval_start <= sold_at(frame, split.test).min()
    # Cars listed before the evaluation began but sold inside it are evaluation rows.
    assert (split.test["listed_at"] < eval_start).any()


def test_training_is_the_train_days_window_before_evaluation() -> None:
    frame = history(30)
    split = retraining_split(frame, settings())
    eval_start = frame[SOLD_AT].max() - timedelta(days=2)
    train_start = eval_start - timedelta(days=10)
    sold = frame[SOLD_AT]
    expected = frame.loc[(sold >= train_start) & (sold < eval_start), "auction_id"]

    learnt = pd.concat([split.train, split.validation])
    assert sorted(learnt["auction_id"]) == sorted(expected)
    assert sold_at(frame, learnt).min() >= train_start
    assert set(learnt["auction_id"]).isdisjoint(split.test["auction_id"])


def test_validation_is_the_latest_share_of_the_window() -> None:
    frame = history(30)
    split = retraining_split(frame, settings(), validation_share=0.2)
    window = len(split.train) + len(split.validation)
    assert window == 10 * 40
    assert len(split.validation) == round(window * 0.2)
    assert split.train["listed_at"].max() <= split.validation["listed_at"].min()
    assert split.train["listed_at"].is_monotonic_increasing
    assert split.validation["listed_at"].is_monotonic_increasing


def test_the_parts_drop_sold_at_and_keep_the_auction_columns() -> None:
    split = retraining_split(history(30), settings())
    for part in (split.train, split.validation, split.test):
        assert list(part.columns) == [*LISTING_FIELDS, TARGET]


def test_blend_adds_older_rows_only_from_before_the_window() -> None:
    frame = history(30)
    plain = retraining_split(frame, settings())
    blended = retraining_split(frame, settings(blend_share=0.25))
    train_start = frame[SOLD_AT].max() - timedelta(days=12)

    window_ids = set(plain.train["auction_id"]) | set(plain.validation["auction_id"])
    learnt = pd.concat([blended.train, blended.validation])
    added = learnt.loc[~learnt["auction_id"].isin(window_ids)]
    assert window_ids <= set(learnt["auction_id"])
    assert len(added) == int(len(window_ids) * 0.25)
    assert (sold_at(frame, added) < train_start).all()
    assert learnt["auction_id"].is_unique
    assert set(blended.test["auction_id"]) == set(plain.test["auction_id"])


def test_blend_is_capped_by_the_older_rows_available() -> None:
    # 16 days: 2 evaluation, 10 window, 4 older — fewer older rows than half the window.
    frame = history(16)
    train_start = frame[SOLD_AT].max() - timedelta(days=12)
    older = int((frame[SOLD_AT] < train_start).sum())
    split = retraining_split(frame, settings(blend_share=1.0))
    learnt = pd.concat([split.train, split.validation])
    assert older < 10 * 40
    assert len(learnt) == 10 * 40 + older


def test_blend_sampling_is_reproducible_by_seed() -> None:
    frame = history(30)
    first = retraining_split(frame, settings(blend_share=0.25), seed=1)
    again = retraining_split(frame, settings(blend_share=0.25), seed=1)
    other = retraining_split(frame, settings(blend_share=0.25), seed=2)
    assert first.train["auction_id"].tolist() == again.train["auction_id"].tolist()
    assert first.train["auction_id"].tolist() != other.train["auction_id"].tolist()


def test_no_older_rows_means_nothing_to_blend() -> None:
    frame = history(12)  # evaluation + window, nothing older
    plain = retraining_split(frame, settings())
    blended = retraining_split(frame, settings(blend_share=0.5))
    assert blended.train["auction_id"].tolist() == plain.train["auction_id"].tolist()


def test_an_empty_frame_cannot_be_split() -> None:
    with pytest.raises(SplitError, match="no labelled auctions to train on yet"):
        retraining_split(labelled_frame([], []), settings())


def test_too_few_evaluation_rows() -> None:
    # Plenty of history, then a sparse final stretch: only a handful of sales in 2 days.
    dense = history(20)
    last = dense[SOLD_AT].max()
    events = [scored(f"late{i}", last, odometer=1.0) for i in range(10)]
    sales = [sale(f"late{i}", last + timedelta(days=3, hours=i)) for i in range(10)]
    frame = pd.concat([dense, labelled_frame(events, sales)], ignore_index=True)
    with pytest.raises(SplitError) as error:
        retraining_split(frame, settings())
    message = str(error.value)
    assert "the evaluation part has 10 labelled rows; need 50" in message
    assert "train_days=10.0, eval_days=2.0" in message


def test_too_few_training_rows() -> None:
    # All the sales fall in the last two days: nothing to learn from.
    with pytest.raises(SplitError, match="the training part has 0 labelled rows; need 50"):
        retraining_split(history(1.5, per_day=100), settings())


def test_too_few_validation_rows() -> None:
    # A window of 200 rows leaves 30 for validation at the default 15%.
    frame = history(13, per_day=20)
    with pytest.raises(SplitError, match="the validation part has 30 labelled rows; need 50"):
        retraining_split(frame, settings(eval_days=3.0))
    split = retraining_split(frame, settings(eval_days=3.0), validation_share=0.25)
    assert len(split.validation) == 50
