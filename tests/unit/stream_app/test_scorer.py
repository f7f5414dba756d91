"""The compiled scorer prices exactly as the registered pipeline does, and falls back to
the pipeline whenever it cannot."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder
from xgboost import XGBRegressor

from gavel import features
from gavel.features import CATEGORICAL_FEATURES, derive_features, listings_frame
from gavel.schemas import Listing
from producers.timeline import listing_payloads
from stream_app import scorer as scorer_module
from stream_app.model import LoadedModel
from stream_app.scorer import (
    CompiledScorer,
    EncodedColumn,
    MarketHead,
    PipelineScorer,
    TargetHead,
    compile_scorer,
    iteration_range,
    raw_frame,
)
from tests.unit.stream_app import pipelines
from trainer.pipeline import fit_baseline
from trainer.training import features_and_target

RTOL = 1e-6
PIPELINES: dict[str, Callable[[], Pipeline]] = {
    "fresh": pipelines.fresh,
    "continued": pipelines.continued,
}


@pytest.fixture(params=list(PIPELINES), scope="module")
def pipeline(request: pytest.FixtureRequest) -> Pipeline:
    return PIPELINES[request.param]()


@pytest.fixture(scope="module")
def compiled(pipeline: Pipeline) -> CompiledScorer:
    scorer = compile_scorer(pipeline, "test")
    assert isinstance(scorer, CompiledScorer), "the champion's pipeline must compile"
    return scorer


def pipeline_prices(pipeline: Pipeline, listings: list[Listing]) -> np.ndarray:
    return np.asarray(pipeline.predict(listings_frame(listings)), dtype=float)


def assert_same_prices(
    compiled: CompiledScorer, pipeline: Pipeline, listings: list[Listing]
) -> None:
    expected = pipeline_prices(pipeline, listings)
    actual = compiled.predict_compiled(listings)
    assert actual.shape == (len(listings),)
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0)
    # The inputs agree exactly too: the model's matrix, as the pipeline's steps make it.
    matrix = pipeline[:-1].transform(listings_frame(listings))
    np.testing.assert_array_equal(compiled.matrix(listings), matrix)


def encoder(pipeline: Pipeline) -> OrdinalEncoder:
    encoded: OrdinalEncoder = pipeline["encode"].named_transformers_["categorical"]
    return encoded


def infrequent_of(fitted: OrdinalEncoder, index: int) -> set[str]:
    rare = fitted.infrequent_categories_[index]
    return set() if rare is None else set(rare)


def text_of(pipeline: Pipeline, column: str, infrequent: bool) -> list[str]:
    """Categories of ``column`` the encoder knows as infrequent, or as frequent."""
    fitted = encoder(pipeline)
    index = list(CATEGORICAL_FEATURES).index(column)
    rare = infrequent_of(fitted, index)
    known = [c for c in fitted.categories_[index] if isinstance(c, str)]
    return [c for c in known if (c in rare) == infrequent]


# -- parity ------------------------------------------------------------------------------


def test_thousands_of_generated_listings_price_the_same(
    compiled: CompiledScorer, pipeline: Pipeline
) -> None:
    listings = pipelines.listings(4000, seed=21)
    assert_same_prices(compiled, pipeline, listings)
    # The listings took every path: unknown (new makes), missing and infrequent codes.
    matrix = compiled.matrix(listings)
    codes = matrix[:, : len(CATEGORICAL_FEATURES)]
    assert (codes == -1).any() and (codes == -2).any()
    trims = matrix[:, list(CATEGORICAL_FEATURES).index("trim")]
    trim = next(c for c in compiled.columns if c.name == "trim")
    assert isinstance(trim, EncodedColumn)
    infrequent_code = max(trim.codes.values())
    assert (trims == infrequent_code).any()


def awkward_listings(pipeline: Pipeline) -> list[Listing]:
    """Hand-made listings at every edge the encoders and the derivation have."""
    at = datetime(2015, 6, 10, 15, tzinfo=UTC)
    base: dict[str, Any] = {
        "listed_at": at,
        "year": 2011,
        "make": "Ford",
        "model": "Fusion",
        "trim": "SE",
        "body": "Sedan",
        "transmission": "automatic",
        "state": "ca",
        "condition": 3.5,
        "odometer": 52_000.0,
        "color": "black",
        "interior": "gray",
        "seller": "acme",
        "mmr": 11_000.0,
    }
    rare_models = text_of(pipeline, "model", infrequent=True)
    rare_trims = text_of(pipeline, "trim", infrequent=True)
    assert rare_models and rare_trims, "the fixture must have infrequent categories"
    variants: list[dict[str, Any]] = [
        {},
        {"make": "Zorgmobile", "model": "Q9000", "trim": "Hyper", "body": "Hovercraft"},
        {"model": rare_models[0], "trim": rare_trims[0]},
        {"model": rare_models[-1].upper(), "trim": f"  {rare_trims[-1]}\t"},
        {"make": "  FORD ", "model": "fUsIoN", "body": "\nSEDAN ", "color": " Black"},
        {"make": "\u2014", "model": "\u2013", "trim": "-", "body": "none", "color": "NULL"},
        {"trim": "nan", "body": "NaN", "interior": " \u2014 ", "color": "None"},
        {"year": 2016, "listed_at": datetime(2015, 12, 31, 23, tzinfo=UTC)},  # next year's
        {"year": 2015, "odometer": 0.0},  # in its first year: half a year old
        {"year": 1950, "odometer": 999_999.0, "condition": 1.0, "mmr": 1.0},
        {"listed_at": datetime(2016, 1, 1, 2, tzinfo=timezone(timedelta(hours=5)))},
    ]
    for optional in ("trim", "body", "transmission", "state", "condition", "odometer",
                     "color", "interior", "seller", "mmr", "vin"):  # fmt: skip
        variants.append({optional: None})
    optional_text = ["trim", "body", "transmission", "state", "color", "interior", "seller"]
    numbers = ["condition", "odometer", "mmr"]
    variants.append(dict.fromkeys([*optional_text, *numbers, "vin"]))
    return [
        Listing.model_validate({**base, **variant, "auction_id": f"awkward-{index}"})
        for index, variant in enumerate(variants)
    ]


def test_unknown_infrequent_missing_and_odd_text_price_the_same(
    compiled: CompiledScorer, pipeline: Pipeline
) -> None:
    listings = awkward_listings(pipeline)
    assert_same_prices(compiled, pipeline, listings)
    for listing in listings:  # one at a time too: the /predict path
        assert_same_prices(compiled, pipeline, [listing])


def text_like(known: list[str]) -> st.SearchStrategy[str]:
    """Known categories with their case and spacing mangled, dashes, words that mean
    missing, and text never seen."""
    spaces = st.sampled_from(["", " ", "  ", "\t", "\n"])
    mangled = st.tuples(spaces, st.sampled_from(known), st.booleans(), spaces).map(
        lambda t: f"{t[0]}{t[1].upper() if t[2] else t[1]}{t[3]}"
    )
    missing = st.sampled_from(["-", "\u2014", " \u2013 ", "nan", "None", "null", "NULL"])
    unseen = st.from_regex(r"[A-Za-z][A-Za-z \-]{0,11}", fullmatch=True)
    return mangled | missing | unseen


@st.composite
def odd_listings(draw: st.DrawFn, pipeline: Pipeline) -> Listing:
    categories = {
        column: [c for c in values if isinstance(c, str) and c.strip()]
        for column, values in zip(CATEGORICAL_FEATURES, encoder(pipeline).categories_, strict=True)
    }
    listed_at = draw(
        st.datetimes(
            min_value=datetime(1991, 1, 1),
            max_value=datetime(2098, 12, 31),
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=-8)), timezone(timedelta(0))]),
        )
    )
    year = draw(st.integers(1950, listed_at.astimezone(UTC).year + 1))
    states = [state for state in categories["state"] if len(state) == 2]

    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.none() | strategy)

    def text(column: str) -> str:
        return draw(text_like(categories[column]))

    def maybe_text(column: str) -> str | None:
        return None if draw(st.booleans()) else text(column)

    return Listing.model_validate(
        {
            "auction_id": "odd",
            "listed_at": listed_at,
            "year": year,
            "make": text("make"),
            "model": text("model"),
            "trim": maybe_text("trim"),
            "body": maybe_text("body"),
            "transmission": maybe(st.sampled_from(["automatic", "manual"])),
            "state": maybe(st.sampled_from([*states, "zz", "QQ"])),
            "condition": maybe(st.floats(1.0, 5.0)),
            "odometer": maybe(st.floats(0.0, 1_000_000.0)),
            "color": maybe_text("color"),
            "interior": maybe_text("interior"),
            "mmr": maybe(st.floats(0.01, 1_000_000.0)),
        }
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_odd_batch_prices_the_same(
    compiled: CompiledScorer, pipeline: Pipeline, data: st.DataObject
) -> None:
    listings = data.draw(st.lists(odd_listings(pipeline), min_size=1, max_size=40))
    assert_same_prices(compiled, pipeline, listings)


def test_prices_use_the_trees_up_to_best_iteration(
    compiled: CompiledScorer, pipeline: Pipeline
) -> None:
    regressor = pipeline["model"].regressor_
    rounds = regressor.get_booster().num_boosted_rounds()
    assert regressor.best_iteration + 1 < rounds, "the fixture must have stopped early"
    assert iteration_range(regressor) == (0, regressor.best_iteration + 1)
    # Every tree would give other prices: the parity tests above would notice.
    listings = pipelines.listings(200, seed=3)
    assert isinstance(compiled.head, TargetHead)
    every_tree = np.exp(compiled.head.booster.inplace_predict(compiled.matrix(listings)))
    assert not np.allclose(every_tree, pipeline_prices(pipeline, listings), rtol=1e-4)


def test_the_continued_model_keeps_the_base_rounds() -> None:
    base = pipelines.fresh()["model"].regressor_
    continued = pipelines.continued()["model"].regressor_
    assert iteration_range(continued)[1] > base.best_iteration + 1


def test_two_versions_each_keep_their_own_prices() -> None:
    """What a hot swap relies on: compiling v2 leaves v1's scorer as it was."""
    first = LoadedModel("price", "1", pipelines.fresh(), 0.0)
    second = LoadedModel("price", "2", pipelines.continued(), 0.0)
    assert first.scorer is not None and first.scorer.compiled
    assert second.scorer is not None and second.scorer.compiled
    listings = pipelines.listings(500, seed=5)
    first_prices, second_prices = first.predict(listings), second.predict(listings)
    np.testing.assert_allclose(first_prices, pipeline_prices(first.pipeline, listings), rtol=RTOL)
    np.testing.assert_allclose(second_prices, pipeline_prices(second.pipeline, listings), rtol=RTOL)
    assert np.median(np.abs(first_prices / second_prices - 1)) > 0.01
    # And compiling v1 again gives v1's prices, not the last compiled ones.
    again = compile_scorer(pipelines.fresh())
    np.testing.assert_array_equal(again.predict(listings), first_prices)


def test_the_code_tables_follow_the_fitted_encoder(compiled: CompiledScorer) -> None:
    fitted = encoder(pipelines.fresh())
    tables = {c.name: c for c in compiled.columns if isinstance(c, EncodedColumn)}
    assert list(tables) == list(CATEGORICAL_FEATURES)
    for index, name in enumerate(CATEGORICAL_FEATURES):
        table = tables[name]
        rare = infrequent_of(fitted, index)
        frequent = sorted(c for c in table.codes if c not in rare)
        assert [table.codes[c] for c in frequent] == list(map(float, range(len(frequent))))
        # min_frequency: the infrequent categories share one code, after the frequent ones.
        assert {table.codes[c] for c in rare} <= {float(len(frequent))}
        assert table.unknown == -1.0
        saw_missing = any(isinstance(c, float) and math.isnan(c) for c in fitted.categories_[index])
        assert table.missing == (-2.0 if saw_missing else -1.0), name


# -- what a later feature needs ------------------------------------------------------------


def test_a_new_numeric_feature_reaches_training_and_serving_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 12 adds numeric columns (maybe missing): added to derive_columns, they reach
    the pipeline (through derive_features) and the compiled scorer, which follows the
    fitted ColumnTransformer's column lists, whatever their subset and order."""
    derive = features.derive_columns

    def with_market(raw: Any) -> dict[str, np.ndarray]:
        out = derive(raw)
        out["market_index"] = np.where(out["age"] > 3, out["mmr"] / 1000.0, np.nan)
        return out

    monkeypatch.setattr(features, "derive_columns", with_market)
    encode = ColumnTransformer(
        [
            ("numeric", "passthrough", ["market_index", "mmr", "age"]),
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=-1,
                    encoded_missing_value=-2,
                    min_frequency=5,
                    dtype=np.float32,
                ),
                ["body", "make"],
            ),
        ]
    )
    pipeline = Pipeline(
        [
            ("features", FunctionTransformer(derive_features)),
            ("encode", encode),
            (
                "model",
                TransformedTargetRegressor(
                    regressor=XGBRegressor(n_estimators=15, max_depth=3, n_jobs=1),
                    func=np.log,
                    inverse_func=np.exp,
                ),
            ),
        ]
    )
    x, y = features_and_target(pipelines.history())
    pipeline.fit(x, y)
    scorer = compile_scorer(pipeline)
    assert isinstance(scorer, CompiledScorer)
    assert [c.name for c in scorer.columns] == ["market_index", "mmr", "age", "body", "make"]
    assert iteration_range(pipeline["model"].regressor_) == (0, 0)  # no early stopping
    listings = pipelines.listings(1000, seed=13) + awkward_listings(pipelines.fresh())
    assert_same_prices(scorer, pipeline, listings)
    assert np.isnan(scorer.matrix(listings)[:, 0]).any()


# -- fallbacks -----------------------------------------------------------------------------


def test_a_pipeline_it_does_not_know_is_priced_by_the_pipeline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    x, y = features_and_target(pipelines.history().iloc[:1000])
    ridge = fit_baseline(x, y).pipeline
    with caplog.at_level(logging.WARNING, logger="stream_app.scorer"):
        scorer = compile_scorer(ridge, "ridge v1")
    assert isinstance(scorer, PipelineScorer) and not scorer.compiled
    assert len(caplog.records) == 1 and "ridge v1: not compiled" in caplog.text
    listings = pipelines.listings(50, seed=2)
    np.testing.assert_array_equal(scorer.predict(listings), pipeline_prices(ridge, listings))
    assert not compile_scorer({"a": "stand-in"}).compiled


def test_compiled_prices_that_differ_on_the_probes_are_not_served(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    read = scorer_module.listing_columns

    def misread(listings: Any) -> dict[str, np.ndarray]:
        columns = read(listings)
        columns["odometer"] = columns["odometer"] * 2  # a compiler bug, say
        return columns

    monkeypatch.setattr(scorer_module, "listing_columns", misread)
    with caplog.at_level(logging.WARNING, logger="stream_app.scorer"):
        scorer = compile_scorer(pipelines.fresh(), "v9")
    assert not scorer.compiled
    assert "differ from the pipeline's" in caplog.text


def test_a_failing_compiled_call_is_priced_by_the_pipeline_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scorer = compile_scorer(pipelines.fresh())
    assert isinstance(scorer, CompiledScorer)

    class Broken:
        def inplace_predict(self, *args: Any, **kwargs: Any) -> np.ndarray:
            raise RuntimeError("the booster broke")

    assert isinstance(scorer.head, TargetHead)
    scorer.head = replace(scorer.head, booster=Broken())  # type: ignore[arg-type]  # fails
    listings = pipelines.listings(20, seed=4)
    with caplog.at_level(logging.ERROR, logger="stream_app.scorer"):
        for _ in range(3):
            prices = scorer.predict(listings)
            expected = pipeline_prices(pipelines.fresh(), listings)
            np.testing.assert_array_equal(prices, expected)
    assert len(caplog.records) == 1


def test_no_listings_no_prices(compiled: CompiledScorer) -> None:
    assert compiled.predict([]).shape == (0,)


# -- the market recipe ---------------------------------------------------------------------


def market_batch(rows: pd.DataFrame) -> tuple[list[Listing], dict[str, np.ndarray]]:
    """Listings as the worker reads them, and their market features as the store gives them."""
    from gavel.market import MARKET_FEATURES

    listings = [Listing.model_validate_json(p) for p in listing_payloads(rows)]
    return listings, {name: rows[name].to_numpy(dtype=float) for name in MARKET_FEATURES}


def test_the_market_recipe_compiles_and_prices_and_bounds_as_its_pipeline() -> None:
    pipeline = pipelines.market()
    scorer = compile_scorer(pipeline, "market")
    assert isinstance(scorer, CompiledScorer) and isinstance(scorer.head, MarketHead)
    rows = pipelines.market_auctions().tail(3000)
    listings, market = market_batch(rows)
    without_mmr = [listing.model_copy(update={"mmr": None}) for listing in listings[:1000]]
    no_market = {name: np.full(1000, np.nan) for name in market}
    for batch, columns in (
        (listings, market),
        (without_mmr, {n: v[:1000] for n, v in market.items()}),
        (listings[:1000], no_market),
        (listings[:1000], None),
    ):
        expected = PipelineScorer(pipeline).price(batch, columns)
        actual = scorer.price_compiled(batch, columns)
        for what in ("price", "low", "high"):
            np.testing.assert_allclose(getattr(actual, what), getattr(expected, what), rtol=RTOL)
        assert actual.level == expected.level == 0.8
        assert (actual.low < actual.price).all() and (actual.price < actual.high).all()
    # The pipeline's own predict agrees too (no interval there).
    frame = raw_frame(listings, market)
    np.testing.assert_allclose(scorer.predict(listings, market), pipeline.predict(frame), rtol=RTOL)


def test_a_market_move_moves_the_compiled_price_in_full() -> None:
    scorer = compile_scorer(pipelines.market(), "market")
    rows = pipelines.market_auctions().tail(500)
    listings, market = market_batch(rows)
    moved = {**market, "mkt_ratio_hat": market["mkt_ratio_hat"] - 0.3}
    ratio = scorer.predict(listings, moved) / scorer.predict(listings, market)
    with_mmr = np.array([listing.mmr is not None for listing in listings])
    np.testing.assert_allclose(ratio[with_mmr], np.exp(-0.3), rtol=1e-9)


def test_the_scorer_names_the_market_features_it_reads() -> None:
    scorer = compile_scorer(pipelines.market(), "market")
    assert "mkt_ratio_hat" in scorer.market_inputs and "mkt_level_hat" in scorer.market_inputs
    assert "mkt_reference" not in scorer.market_inputs  # derived, not read
    assert set(scorer.market_inputs) == set(PipelineScorer(pipelines.market()).market_inputs)
    assert compile_scorer(pipelines.fresh(), "old").market_inputs == ()
