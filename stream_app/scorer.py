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
from collections.abc import Callable, Sequence
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
from gavel.schemas import LISTING_FIELDS, Listing

log = logging.getLogger(__name__)

PROBE_RTOL = 1e-6
"""How far a compiled price may be from the pipeline's on the probes before compiling is
abandoned (relative). Measured: they agree to the bit."""


class Scorer(Protocol):
    """Prices for a batch of validated listings, in their order."""

    @property
    def compiled(self) -> bool: ...

    def predict(self, listings: Sequence[Listing]) -> np.ndarray: ...


class Unsupported(Exception):
    """The pipeline has a part the compiler does not know how to reproduce."""


@dataclass(frozen=True)
class PipelineScorer:
    """The pipeline itself, on a frame of the listings: always right, slower."""

    pipeline: Any
    compiled: bool = False

    def predict(self, listings: Sequence[Listing]) -> np.ndarray:
        return np.asarray(self.pipeline.predict(listings_frame(listings)), dtype=float)


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


class CompiledScorer:
    """Prices listings as ``pipeline.predict(listings_frame(listings))`` does, without
    the frame or sklearn's per-call checks. Made by :func:`compile_scorer`."""

    compiled = True

    def __init__(
        self,
        columns: Sequence[Column],
        booster: Booster,
        iteration_range: tuple[int, int],
        missing: float,
        inverse: Callable[[np.ndarray], np.ndarray],
        fallback: PipelineScorer,
    ) -> None:
        self.columns = tuple(columns)
        self.booster = booster
        self.iteration_range = iteration_range
        self.missing = missing
        self.inverse = inverse
        self.fallback = fallback
        self._failed = threading.Event()  # logs the first failure only

    def matrix(self, listings: Sequence[Listing]) -> np.ndarray:
        """The model's input matrix: what the pipeline's steps before the model return."""
        # Looked up on the module each call: the very function derive_features wraps.
        derived = features.derive_columns(listing_columns(listings))
        # float32: what XGBoost reads anyway, and exact for the encoder's integer codes.
        out = np.empty((len(listings), len(self.columns)), dtype=np.float32)
        for index, column in enumerate(self.columns):
            values = derived[column.name]
            out[:, index] = column.encode(values) if isinstance(column, EncodedColumn) else values
        return out

    def predict_compiled(self, listings: Sequence[Listing]) -> np.ndarray:
        """Prices by the compiled path only (no fallback): what the parity tests check."""
        if not listings:
            return np.empty(0, dtype=float)
        margin = self.booster.inplace_predict(
            self.matrix(listings),
            iteration_range=self.iteration_range,
            missing=self.missing,
            validate_features=False,  # the column count was checked when compiling
        )
        prices = self.inverse(np.asarray(margin).reshape(-1, 1))
        return np.asarray(prices, dtype=float).reshape(-1)

    def predict(self, listings: Sequence[Listing]) -> np.ndarray:
        try:
            return self.predict_compiled(listings)
        except Exception:
            # The prices are the same either way; only the speed differs.
            if not self._failed.is_set():
                self._failed.set()
                log.exception("the compiled scorer failed; this call uses pipeline.predict")
            return self.fallback.predict(listings)


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
    regressor = _regressor(model)
    booster = regressor.get_booster()
    if booster.num_features() != len(columns):
        raise Unsupported(f"{len(columns)} columns for {booster.num_features()} model features")
    _check_derived(columns)
    return CompiledScorer(
        columns,
        booster,
        iteration_range(regressor),
        float(regressor.missing),
        _inverse(model),
        fallback,
    )


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


def _probe_mismatch(compiled: CompiledScorer, pipeline: Any) -> str | None:
    probes = probe_listings(compiled.columns)
    expected = np.asarray(pipeline.predict(listings_frame(probes)), dtype=float)
    actual = compiled.predict_compiled(probes)
    if actual.shape != expected.shape or not np.allclose(
        actual, expected, rtol=PROBE_RTOL, atol=0.0, equal_nan=True
    ):
        return f"compiled prices {actual.tolist()} differ from the pipeline's {expected.tolist()}"
    return None
