"""Auction record sources: the Kaggle CSV loader and the synthetic generator.

Both return an *auction frame*: one row per auction with the listing columns
of :class:`gavel.schemas.Listing` plus ``sellingprice``, sorted by
``listed_at`` (UTC). See :mod:`producers.sources.frame`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"


class SourceError(ValueError):
    """A source that cannot be read; the message says why and what to do."""


@dataclass(frozen=True)
class SourceSpec:
    """Where auction records come from: ``synthetic`` or the path of a Kaggle CSV.

    The synthetic options (rows, seed, dates, scenarios) are ignored for a CSV.
    """

    source: str = SYNTHETIC
    rows: int = 200_000
    seed: int = 0
    start: str = "2015-01-01"
    end: str = "2015-07-01"
    scenarios: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        if self.source == SYNTHETIC:
            extra = f", scenarios={list(self.scenarios)}" if self.scenarios else ""
            return f"synthetic(rows={self.rows}, seed={self.seed}{extra})"
        return Path(self.source).name


def load_auctions(spec: SourceSpec, progress: bool = False) -> pd.DataFrame:
    """The auction frame for ``spec``, sorted by ``listed_at``."""
    if spec.source == SYNTHETIC:
        from producers.sources.scenarios import parse_scenario
        from producers.sources.synthetic import generate_auctions

        scenarios = [parse_scenario(text) for text in spec.scenarios]
        return generate_auctions(
            spec.rows, start=spec.start, end=spec.end, seed=spec.seed, scenarios=scenarios
        )
    path = Path(spec.source)
    if not path.exists():
        raise SourceError(f"no such file: {path} (use 'synthetic' or the Kaggle car_prices CSV)")
    if spec.scenarios:
        raise SourceError("drift scenarios apply to the synthetic source only")
    from producers.sources.kaggle import load_kaggle_csv

    loaded = load_kaggle_csv(path, progress=progress)
    return loaded.frame
