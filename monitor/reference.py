"""Reference statistics of a model version, computed once and cached.

The reference is the held-out sample logged with the model (features, prediction and
sale price). Its drift side (the Evidently dataset and the cleaned columns), MAPE and
bias are built on first use of a version and reused for every window until the
champion changes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from gavel.features import TARGET
from gavel.price_errors import bias, mape
from gavel.settings import Settings
from monitor.drift import PREDICTION, DriftReference, monitored_frame
from shell import registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    model_name: str
    version: str
    frame: pd.DataFrame = field(repr=False)
    drift: DriftReference = field(repr=False)  # the drift tests' side, built once
    mape: float
    bias: float

    @property
    def rows(self) -> int:
        return len(self.frame)


def build_reference(model_name: str, version: str, sample: pd.DataFrame, rows: int) -> Reference:
    """Drift is measured against every row of ``sample``; the reference MAPE and bias only
    against its held-out rows (column ``held_out``, when the sample has it)."""
    if len(sample) > rows:
        sample = sample.sample(rows, random_state=0)
    frame = monitored_frame(sample)
    held_out = frame
    if "held_out" in sample:
        mask = sample["held_out"].fillna(False).astype(bool).to_numpy()
        held_out = frame.loc[mask] if mask.any() else frame
    return Reference(
        model_name=model_name,
        version=version,
        frame=frame,
        drift=DriftReference.from_frame(frame.drop(columns=[TARGET])),
        mape=mape(held_out[TARGET], held_out[PREDICTION]),
        bias=bias(held_out[TARGET], held_out[PREDICTION]),
    )


class ReferenceCache:
    """References by model version, loaded from the registry on first use."""

    def __init__(
        self,
        settings: Settings,
        load_sample: Callable[[str], pd.DataFrame] | None = None,
        capacity: int = 4,
    ) -> None:
        self.model_name = settings.model_name
        self.rows = settings.monitor.max_window_rows
        self.capacity = capacity
        self._client = None if load_sample else registry.connect(settings)
        self._load_sample = load_sample or self._sample_from_registry
        self._cache: OrderedDict[str, Reference] = OrderedDict()

    def _sample_from_registry(self, version: str) -> pd.DataFrame:
        assert self._client is not None
        info = registry.version_info(self._client, self.model_name, version)
        return registry.load_reference_sample(self._client, info.run_id)

    def champion_version(self) -> str | None:
        if self._client is None:
            return None
        current = registry.champion(self._client, self.model_name)
        return current.version if current else None

    def get(self, version: str) -> Reference:
        if version in self._cache:
            self._cache.move_to_end(version)
            return self._cache[version]
        reference = build_reference(self.model_name, version, self._load_sample(version), self.rows)
        log.info(
            "reference for %s v%s: %d rows, MAPE %.1f%%, bias %+.1f%%",
            self.model_name,
            version,
            reference.rows,
            100 * reference.mape,
            100 * reference.bias,
        )
        self._cache[version] = reference
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return reference
