"""Deliberately malformed listings, for testing the dead-letter path and for the demo.

Each kind breaks a valid listing in one way and says which dead-letter reason the
worker should give it.

>>> payload, reason = corrupt({"auction_id": "a1", "year": 2012, "make": "Ford"}, "missing_field")
>>> reason.value, b"make" in payload
('schema', False)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from gavel.schemas import DeadLetterReason

CORRUPTIONS: dict[str, DeadLetterReason] = {
    "missing_field": DeadLetterReason.SCHEMA,
    "wrong_type": DeadLetterReason.SCHEMA,
    "negative_odometer": DeadLetterReason.OUT_OF_RANGE,
    "future_year": DeadLetterReason.OUT_OF_RANGE,
    "condition_out_of_scale": DeadLetterReason.OUT_OF_RANGE,
    "not_json": DeadLetterReason.NOT_JSON,
}


def corrupt(listing: dict[str, Any], kind: str) -> tuple[bytes, DeadLetterReason]:
    """The listing broken in the named way, and the reason it must be dead-lettered for."""
    broken = dict(listing)
    if kind == "missing_field":
        broken.pop("make", None)
    elif kind == "wrong_type":
        broken["year"] = "two thousand and twelve"
    elif kind == "negative_odometer":
        broken["odometer"] = -1250.0
    elif kind == "future_year":
        broken["year"] = 2999
    elif kind == "condition_out_of_scale":
        broken["condition"] = 42.0  # the 1-49 scale leaking through unconverted
    elif kind == "not_json":
        return b"\x00{not json: " + str(listing.get("auction_id")).encode(), CORRUPTIONS[kind]
    else:
        raise ValueError(f"unknown corruption {kind!r}; choose from {sorted(CORRUPTIONS)}")
    return orjson.dumps(broken), CORRUPTIONS[kind]


def pick_corruptions(n: int, share: float, seed: int) -> dict[int, str]:
    """Which of ``n`` listings to corrupt (about ``share`` of them), cycling through kinds."""
    if not 0.0 <= share < 1.0:
        raise ValueError("corrupt share must be in [0, 1)")
    rng = np.random.default_rng([seed, 7])
    chosen = np.flatnonzero(rng.random(n) < share)
    kinds = sorted(CORRUPTIONS)
    return {int(index): kinds[i % len(kinds)] for i, index in enumerate(chosen)}
