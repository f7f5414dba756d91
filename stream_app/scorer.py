"""The champion's pipeline, compiled once per loaded version into a vectorised scorer.

The registry keeps the model as it was trained: an sklearn pipeline over raw listings
(``derive_features`` → ``ColumnTransformer`` → ``TransformedTargetRegressor(XGBRegressor)``).
Calling it costs a pandas frame and sklearn's checks on every call, about 9.5 ms for one
row. :func:`compile_scorer` reads the fitted pipeline once and prices the same way without
them:

- columns straight from the validated listings (:func:`gavel.features.listing_columns`);
- the derived features from :func:`gavel.features.derive_columns`, the function that the
  pipeline's own ``derive_features`` wraps;
- category codes by dict lookups, tabulated by the fitted ``OrdinalEncoder`` itself
  (frequent, infrequent, unknown and missing values alike), numbers passed through in the
  fitted ``ColumnTransformer``'s column order;
- ``Booster.inplace_predict`` over the trees that ``XGBRegressor.predict`` would use (up
  to ``best_iteration``), then the target transformer's inverse.

A pipeline it does not recognise, or one whose compiled prices differ from its own on a
few probe listings, is priced by ``pipeline.predict`` (:class:`PipelineScorer`); a
compiled call that fails prices that call with the pipeline. Either is logged once.

>>> scorer = compile_scorer({"not": "a pipeline"})
>>> scorer.compiled
False
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder
from xgboost import Booster, XGBRegressor

from gavel import features
from gavel.features import derive_features, listing_columns, listings_frame
from gavel.market import MARKET_FEATURES
from gavel.schemas import LISTING_FIELDS, Listing
from shell.price_model import MarketPriceRegressor, interval_bounds, interval_group

log = logging.getLogger(__name__)

PROBE_RTOL = 1e-6
"""How far a compiled price may be from the pipeline's on the probes before compiling is
abandoned (relative). Measured: they agree to the bit."""


MarketColumns = Mapping[str, np.ndarray]
"""A batch's market features by name (:data:`gavel.market.MARKET_FEATURES`), one value
per listing; absent names (or no mapping at all) are missing for every listing."""


@dataclass(frozen=True)
class Priced:
    """A batch's prices and, for a model that has them, their intervals."""

    price: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    level: float | None = None


class Scorer(Protocol):
    """Prices for a batch of validated listings (and their market features), in order."""

    @property
    def compiled(self) -> bool: ...

    @property
    def market_inputs(self) -> tuple[str, ...]: ...

    def price(self, listings: Sequence[Listing], market: MarketColumns | None = None) -> Priced: ...

    def predict(
        self, listings: Sequence[Listing], market: MarketColumns | None = None
    ) -> np.ndarray: ...


class Unsupported(Exception):
    """The pipeline has a part the compiler does not know how to reproduce."""


def raw_frame(listings: Sequence[Listing], market: MarketColumns | None) -> pd.DataFrame:
    """The frame the registered pipeline reads: listing columns and market features."""
    frame = listings_frame(listings)
    for name, values in (market or {}).items():
        frame[name] = np.asarray(values, dtype=float)
    return frame


def market_inputs_of(names: Sequence[str]) -> tuple[str, ...]:
    """The market features a model reading ``names`` depends on: those it reads, and those
    its reference price is derived from.

    >>> market_inputs_of(["make", "mkt_reference", "mkt_mm_n_90d"])
    ('mkt_mm_n_90d', 'mkt_ratio_hat', 'mkt_level_hat')
    """
    read = [name for name in names if name in _MARKET_FEATURE_SET]
    if features.REFERENCE in names:
        read += [name for name in _REFERENCE_INPUTS if name not in read]
    return tuple(read)


_MARKET_FEATURE_SET = frozenset(MARKET_FEATURES)
_REFERENCE_INPUTS = ("mkt_ratio_hat", "mkt_level_hat")


@dataclass(frozen=True)
class PipelineScorer:
    """The pipeline itself, on a frame of the listings: always right, slower."""

    pipeline: Any
    compiled: bool = False

    @property
    def market_inputs(self) -> tuple[str, ...]:
        encode = dict(getattr(self.pipeline, "steps", [])).get("encode")
        try:
            return market_inputs_of([column.name for column in _columns(encode)])
        except Unsupported:
            return ()

    def price(self, listings: Sequence[Listing], market: MarketColumns | None = None) -> Priced:
        frame = raw_frame(listings, market)
        steps = dict(getattr(self.pipeline, "steps", []))
        model: Any = steps.get("model")
        table = getattr(model, "intervals_", None)
        if table is None or not hasattr(model, "predict_log"):
            return Priced(np.asarray(self.pipeline.predict(frame), dtype=float))
        x = steps["encode"].transform(steps["features"].transform(frame))
        log_price = model.predict_log(x)
        groups = interval_group(
            frame["mmr"].notna().to_numpy(), frame["condition"].notna().to_numpy()
        )
        low, high = interval_bounds(table, log_price, groups)
        return Priced(np.exp(log_price), low, high, float(table["level"]))

    def predict(
        self, listings: Sequence[Listing], market: MarketColumns | None = None
    ) -> np.ndarray:
        return self.price(listings, market).price


@dataclass(frozen=True)
class EncodedColumn:
    """A text feature and the codes its fitted encoder gives each value."""

    name: str
    codes: dict[str, float]
    missing: float
    unknown: float

    def encode(self, values: np.ndarray) -> list[float]:
        """Codes of normalised text (NaN = missing).

        >>> column = EncodedColumn("body", {"sedan": 0.0, "suv": 1.0}, missing=-2.0,
        ...                        unknown=-1.0)
        >>> column.encode(np.array(["suv", "coupe", np.nan], dtype=object))
        [1.0, -1.0, -2.0]
        """
        get, unknown, missing = self.codes.get, self.unknown, self.missing
        return [get(value, unknown) if isinstance(value, str) else missing for value in values]


@dataclass(frozen=True)
class NumericColumn:
    """A number passed through as it was derived."""

    name: str


Column = EncodedColumn | NumericColumn


@dataclass(frozen=True)
class TargetHead:
    """``TransformedTargetRegressor(XGBRegressor)``: one booster, then the inverse."""

    booster: Booster
    iteration_range: tuple[int, int]
    missing: float
    inverse: Callable[[np.ndarray], np.ndarray]

    def price(self, x: np.ndarray, derived: Mapping[str, np.ndarray]) -> Priced:
        margin = self.booster.inplace_predict(
            x.astype(np.float32),  # what XGBoost reads: the same values it would cast to
            iteration_range=self.iteration_range,
            missing=self.missing,
            validate_features=False,  # the column count was checked when compiling
        )
        prices = self.inverse(np.asarray(margin).reshape(-1, 1))
        return Priced(np.asarray(prices, dtype=float).reshape(-1))


@dataclass(frozen=True)
class MarketHead:
    """:class:`shell.price_model.MarketPriceRegressor`: the reference price as the offset,
    one booster per regime (with an mmr or without) on the other columns, and the
    interval table."""

    reference: int
    mmr: int
    fallback: float
    boosters: Mapping[str, tuple[Booster, tuple[int, int]]]
    missing: float
    intervals: Mapping[str, Any] | None

    def price(self, x: np.ndarray, derived: Mapping[str, np.ndarray]) -> Priced:
        # The offset from the float64 column itself: a log price in float32 would move
        # prices by ~1e-5.
        reference = x[:, self.reference]
        log_price = np.where(np.isfinite(reference), reference, self.fallback)
        mmr = x[:, self.mmr]
        with np.errstate(invalid="ignore"):
            has_mmr = np.isfinite(mmr) & (mmr > 0)
        trees = np.delete(x, self.reference, axis=1).astype(np.float32)
        fallback = next(iter(self.boosters.values()))
        for regime, rows in (("mmr", has_mmr), ("no_mmr", ~has_mmr)):
            if rows.any():
                booster, iterations = self.boosters.get(regime, fallback)
                log_price[rows] += booster.inplace_predict(
                    trees[rows],
                    iteration_range=iterations,
                    missing=self.missing,
                    validate_features=False,
                )
        if self.intervals is None:
            return Priced(np.exp(log_price))
        groups = interval_group(has_mmr, np.isfinite(derived["condition"]))
        low, high = interval_bounds(self.intervals, log_price, groups)
        return Priced(np.exp(log_price), low, high, float(self.intervals["level"]))


Head = TargetHead | MarketHead


class CompiledScorer:
    """Prices listings as ``pipeline.predict`` does on their frame, without the frame or
    sklearn's per-call checks. Made by :func:`compile_scorer`."""

    compiled = True

    def __init__(self, columns: Sequence[Column], head: Head, fallback: PipelineScorer) -> None:
        self.columns = tuple(columns)
        self.head = head
        self.fallback = fallback
        self.market_inputs = market_inputs_of([column.name for column in self.columns])
        self._failed = threading.Event()  # logs the first failure only

    @property
    def iteration_range(self) -> tuple[int, int] | dict[str, tuple[int, int]]:
        if isinstance(self.head, TargetHead):
            return self.head.iteration_range
        return {regime: trees for regime, (_, trees) in self.head.boosters.items()}

    def _derived(
        self, listings: Sequence[Listing], market: MarketColumns | None
    ) -> dict[str, np.ndarray]:
        raw = listing_columns(listings)
        if market:
            raw.update({name: values for name, values in market.items()})
        # Looked up on the module each call: the very function derive_features wraps.
        return features.derive_columns(raw)

    def _matrix(self, derived: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
        out = np.empty((rows, len(self.columns)), dtype=float)
        for index, column in enumerate(self.columns):
            values = derived[column.name]
            out[:, index] = column.encode(values) if isinstance(column, EncodedColumn) else values
        return out

    def matrix(
        self, listings: Sequence[Listing], market: MarketColumns | None = None
    ) -> np.ndarray:
        """The model's input matrix: what the pipeline's steps before the model return."""
        return self._matrix(self._derived(listings, market), len(listings))

    def price_compiled(
        self, listings: Sequence[Listing], market: MarketColumns | None = None
    ) -> Priced:
        """Prices by the compiled path only (no fallback): what the parity tests check."""
        if not listings:
            return Priced(np.empty(0, dtype=float))
        derived = self._derived(listings, market)
        return self.head.price(self._matrix(derived, len(listings)), derived)

    def predict_compiled(
        self, listings: Sequence[Listing], market: MarketColumns | None = None
    ) -> np.ndarray:
        return self.price_compiled(listings, market).price

    def price(self, listings: Sequence[Listing], market: MarketColumns | None = None) -> Priced:
        try:
            return self.price_compiled(listings, market)
        except Exception:
            # The prices are the same either way; only the speed differs.
            if not self._failed.is_set():
                self._failed.set()
                log.exception("the compiled scorer failed; this call uses pipeline.predict")
            return self.fallback.price(listings, market)

    def predict(
        self, listings: Sequence[Listing], market: MarketColumns | None = None
    ) -> np.ndarray:
        return self.price(listings, market).price


def compile_scorer(pipeline: Any, name: str = "model") -> Scorer:
    """The fastest scorer with ``pipeline``'s prices; never raises.

    Compiles a pipeline that :func:`trainer.pipeline.fit_xgboost` or
    :func:`~trainer.pipeline.continue_xgboost` made, checks it against the pipeline on a
    few probe listings, and otherwise returns a :class:`PipelineScorer` (logging why,
    once). ``name`` labels the log lines (``price v3``).
    """
    fallback = PipelineScorer(pipeline)
    try:
        compiled = _compile(pipeline, fallback)
        mismatch = _probe_mismatch(compiled, pipeline)
    except Unsupported as exc:
        log.warning("%s: not compiled (%s); pricing with pipeline.predict", name, exc)
        return fallback
    except Exception:
        log.exception("%s: compiling failed; pricing with pipeline.predict", name)
        return fallback
    if mismatch is not None:
        log.warning("%s: not compiled (%s); pricing with pipeline.predict", name, mismatch)
        return fallback
    log.info(
        "%s: compiled scorer, %d columns, trees %s",
        name,
        len(compiled.columns),
        compiled.iteration_range,
    )
    return compiled


def _compile(pipeline: Any, fallback: PipelineScorer) -> CompiledScorer:
    steps = [step for _, step in getattr(pipeline, "steps", [])]
    if not isinstance(pipeline, Pipeline) or len(steps) != 3:
        raise Unsupported(f"a {type(pipeline).__name__}, not a 3-step pipeline")
    derive, encode, model = steps
    _check_features(derive)
    columns = _columns(encode)
    _check_derived(columns)
    if isinstance(model, MarketPriceRegressor):
        return CompiledScorer(columns, _market_head(model, len(columns)), fallback)
    regressor = _regressor(model)
    booster = regressor.get_booster()
    if booster.num_features() != len(columns):
        raise Unsupported(f"{len(columns)} columns for {booster.num_features()} model features")
    head = TargetHead(
        booster, iteration_range(regressor), float(regressor.missing), _inverse(model)
    )
    return CompiledScorer(columns, head, fallback)


def _market_head(model: MarketPriceRegressor, columns: int) -> MarketHead:
    regressors: dict[str, XGBRegressor] = getattr(model, "regressors_", {})
    if not regressors:
        raise Unsupported("a MarketPriceRegressor that was never fitted")
    boosters = {}
    for regime, regressor in regressors.items():
        booster = regressor.get_booster()
        if booster.num_features() != columns - 1:  # every column but the reference
            raise Unsupported(f"{columns - 1} tree columns for {booster.num_features()}")
        boosters[regime] = (booster, iteration_range(regressor))
    missing = {
        float(r.missing) if not math.isnan(r.missing) else math.nan for r in regressors.values()
    }
    if len(missing) != 1:
        raise Unsupported("the regimes' boosters read missing values differently")
    return MarketHead(
        reference=_position(model.reference_column, columns),
        mmr=_position(model.mmr_column, columns),
        fallback=float(model.fallback_),
        boosters=boosters,
        missing=missing.pop(),
        intervals=getattr(model, "intervals_", None),
    )


def _position(index: int, columns: int) -> int:
    position = index if index >= 0 else columns + index
    if not 0 <= position < columns:
        raise Unsupported(f"column {index} of {columns}")
    return position


def _check_features(step: Any) -> None:
    if not (
        isinstance(step, FunctionTransformer)
        and step.func is derive_features
        and not step.kw_args
        and not step.validate
    ):
        raise Unsupported(f"first step {step!r} is not FunctionTransformer(derive_features)")


def _columns(encode: Any) -> list[Column]:
    """The model's input columns, in the order the fitted ColumnTransformer writes them."""
    if not isinstance(encode, ColumnTransformer) or getattr(encode, "sparse_output_", True):
        raise Unsupported(f"second step {type(encode).__name__} is not a dense ColumnTransformer")
    output = getattr(encode, "_sklearn_output_config", {}).get("transform", "default")
    if output != "default":
        raise Unsupported(f"the ColumnTransformer outputs {output}")
    columns: list[Column] = []
    for part, transformer, selection in encode.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        names = _selected(encode, selection)
        if not names:
            continue
        if isinstance(transformer, OrdinalEncoder):
            columns.extend(_encoded(transformer, names))
        elif (isinstance(transformer, str) and transformer == "passthrough") or _is_identity(
            transformer
        ):
            columns.extend(NumericColumn(name) for name in names)
        else:
            raise Unsupported(f"transformer {part!r} is a {type(transformer).__name__}")
    return columns


def _selected(encode: ColumnTransformer, selection: Any) -> list[str]:
    """Column names of a fitted selection: names, or positions in the input frame."""
    if isinstance(selection, str):
        return [selection]
    values = list(selection) if isinstance(selection, list | tuple | np.ndarray) else None
    if values is None:
        raise Unsupported(f"column selection {selection!r}")
    if all(isinstance(value, str) for value in values):
        return values
    names_in = getattr(encode, "feature_names_in_", None)
    if names_in is not None and all(isinstance(value, int | np.integer) for value in values):
        return [str(names_in[value]) for value in values]
    raise Unsupported(f"column selection {selection!r}")


def _is_identity(transformer: Any) -> bool:
    # A fitted ColumnTransformer keeps "passthrough" as an identity FunctionTransformer.
    return (
        isinstance(transformer, FunctionTransformer)
        and transformer.func is None
        and not transformer.validate
    )


def _encoded(encoder: OrdinalEncoder, names: list[str]) -> list[EncodedColumn]:
    """Code tables of a fitted encoder, made by the encoder itself.

    Every category it knows, a missing value and a value it has never seen go through
    ``encoder.transform`` once, so infrequent categories (``min_frequency``), unknown ones
    (``unknown_value``) and missing ones (``encoded_missing_value``, or ``unknown_value``
    when the fit saw no missing value) get exactly the codes the pipeline gives them.
    """
    if encoder.handle_unknown != "use_encoded_value":
        raise Unsupported(f"OrdinalEncoder(handle_unknown={encoder.handle_unknown!r})")
    categories: list[list[str]] = []
    for name, values in zip(names, encoder.categories_, strict=True):
        known = [value for value in values if not _is_nan(value)]
        if not all(isinstance(value, str) for value in known):
            raise Unsupported(f"non-text categories in {name!r}")
        categories.append(known)
    unseen = _unseen_text(categories)
    rows = max(len(known) for known in categories) + 2
    grid = np.empty((rows, len(names)), dtype=object)
    for index, known in enumerate(categories):
        filler = known[0] if known else unseen
        grid[:, index] = [*known, *[filler] * (rows - 2 - len(known)), np.nan, unseen]
    names_in = getattr(encoder, "feature_names_in_", None)
    probe = pd.DataFrame(grid, columns=list(names_in)) if names_in is not None else grid
    codes = np.asarray(encoder.transform(probe), dtype=float)
    return [
        EncodedColumn(
            name,
            {value: float(codes[row, index]) for row, value in enumerate(known)},
            missing=float(codes[-2, index]),
            unknown=float(codes[-1, index]),
        )
        for index, (name, known) in enumerate(zip(names, categories, strict=True))
    ]


def _check_derived(columns: Sequence[Column]) -> None:
    """Every column the model reads is one that derive_columns makes, of the right kind:
    text for an encoder, numbers for a passthrough (NaN is fine: XGBoost's missing)."""
    derived = features.derive_columns(listing_columns(probe_listings(columns)))
    for column in columns:
        values = derived.get(column.name)
        if values is None:
            raise Unsupported(f"the model reads {column.name!r}, which derive_columns lacks")
        wanted = "O" if isinstance(column, EncodedColumn) else "f"
        if values.dtype.kind != wanted:
            raise Unsupported(f"{column.name!r} is derived as {values.dtype}")


def _unseen_text(categories: list[list[str]]) -> str:
    taken = {value for known in categories for value in known}
    text = "\x00unseen"
    while text in taken:
        text += "\x00"
    return text


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _regressor(model: Any) -> XGBRegressor:
    if not isinstance(model, TransformedTargetRegressor):
        raise Unsupported(f"last step is a {type(model).__name__}")
    regressor = getattr(model, "regressor_", None)
    if not isinstance(regressor, XGBRegressor):
        raise Unsupported(f"the regressor is a {type(regressor).__name__}, not an XGBRegressor")
    return regressor


def iteration_range(regressor: XGBRegressor) -> tuple[int, int]:
    """The trees ``XGBRegressor.predict`` uses: up to ``best_iteration`` when the fit
    stopped early (a continued model's counts the base model's rounds too), else all."""
    if regressor.booster == "gblinear":
        return (0, 0)
    try:
        return (0, int(regressor.best_iteration) + 1)
    except AttributeError:  # no early stopping: XGBoost's (0, 0) means every tree
        return (0, 0)


def _inverse(model: TransformedTargetRegressor) -> Callable[[np.ndarray], np.ndarray]:
    """The target transformer's inverse, on a (n, 1) column as the regressor applies it."""
    transformer = model.transformer_
    if isinstance(transformer, FunctionTransformer):
        # What FunctionTransformer.inverse_transform calls, without its per-call checks.
        function, kwargs = transformer.inverse_func, transformer.inv_kw_args or {}
        if function is None:
            return _identity
        return lambda column: function(column, **kwargs)
    inverse_transform: Callable[[np.ndarray], np.ndarray] = transformer.inverse_transform
    return inverse_transform


def _identity(column: np.ndarray) -> np.ndarray:
    return column


def probe_listings(columns: Sequence[Column]) -> list[Listing]:
    """A few listings that take every path of the compiled scorer: the first and the last
    category each encoder knows, unseen text, odd case and spacing, a dash, and every
    optional field missing."""
    known = {
        column.name: list(column.codes)
        for column in columns
        if isinstance(column, EncodedColumn) and column.name in LISTING_FIELDS
    }

    def texts(pick: int, shape: Callable[[str], str] = str) -> dict[str, str | None]:
        return {name: shape(values[pick]) if values else None for name, values in known.items()}

    listed_at = datetime(2015, 6, 1, 12, tzinfo=UTC)
    base: dict[str, Any] = {
        "listed_at": listed_at,
        "year": 2012,
        "make": "probe",
        "model": "probe",
        "odometer": 41_000.0,
        "condition": 3.5,
        "mmr": 12_000.0,
    }
    unseen = {name: f"  Never Seen {name.upper()} " for name in known}
    probes = [
        {**base, **texts(0), "auction_id": "probe-first"},
        {**base, **texts(-1), "auction_id": "probe-last"},
        {**base, **texts(0, lambda text: f" {text.upper()}  "), "odometer": 0.0},
        {**base, **unseen, "auction_id": "probe-unseen", "year": 2016},
        {"listed_at": listed_at, "year": 2001, "make": "\u2014", "model": "-"},
    ]
    # model_construct: probes compare two ways of pricing, they need not be valid listings.
    return [Listing.model_construct(**{"auction_id": "probe", **probe}) for probe in probes]


def probe_market(listings: int) -> dict[str, np.ndarray]:
    """Market features for the probes: some listings with a market, some without."""
    rng = np.random.default_rng(0)
    market = {name: rng.uniform(0.0, 50.0, listings) for name in MARKET_FEATURES}
    market["mkt_ratio_hat"] = rng.uniform(-0.3, 0.3, listings)
    market["mkt_level_hat"] = rng.uniform(7.0, 11.0, listings)
    for values in market.values():
        values[::2] = np.nan  # every other probe without any market memory
    return market


def _probe_mismatch(compiled: CompiledScorer, pipeline: Any) -> str | None:
    probes = probe_listings(compiled.columns)
    for market in (None, probe_market(len(probes))):
        expected = PipelineScorer(pipeline).price(probes, market)
        actual = compiled.price_compiled(probes, market)
        for what in ("price", "low", "high"):
            want, got = getattr(expected, what), getattr(actual, what)
            if (want is None) != (got is None):
                return f"the compiled {what} is {got!r}, the pipeline's {want!r}"
            if want is None or got is None:
                continue
            if got.shape != want.shape or not np.allclose(
                got, want, rtol=PROBE_RTOL, atol=0.0, equal_nan=True
            ):
                return f"compiled {what} {got.tolist()} differ from the pipeline's {want.tolist()}"
    return None
