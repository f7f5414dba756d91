"""The ``POST /predict`` contract: one listing or many in, prices or per-field errors out.

``auction_id`` and ``listed_at`` may be left out of a request; they default to
``request-<index>`` and the time of the request.

>>> listings, errors = parse_predict_request(b'{"year": 2012, "make": "Ford"}')
>>> listings, [e["loc"] for e in errors]
([], [['model']])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from gavel.schemas import Listing, utc_now
from stream_app.validation import field_errors

MAX_LISTINGS_PER_REQUEST = 10_000
INLINE_LISTINGS = 64
"""Requests of up to this many listings are priced on the event loop (about 0.3 ms for
one, 1 ms for 64, with the compiled scorer); larger ones in a thread, so that they never
hold up the stream for long."""


@dataclass(frozen=True)
class Refusal:
    """Why a ``/predict`` request is refused before its body is read."""

    status: int
    detail: str


def admit(content_type: str, content_length: int | None, max_bytes: int) -> Refusal | None:
    """None when a request may be read; otherwise the HTTP status and why.

    >>> admit("application/json", 120, 1024) is None
    True
    >>> admit("application/x-www-form-urlencoded", 120, 1024).status
    415
    >>> admit("application/json", 4096, 1024).status
    413
    """
    if content_type != "application/json" and not content_type.endswith("+json"):
        return Refusal(415, f"send JSON (Content-Type: application/json), not {content_type!r}")
    if content_length is not None and content_length > max_bytes:
        return Refusal(413, f"body of {content_length} bytes exceeds the {max_bytes}-byte limit")
    return None


def parse_predict_request(body: bytes) -> tuple[list[Listing], list[dict[str, Any]]]:
    """Listings from a request body, or the errors (each with its ``index``) if any."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return [], [{"index": None, "loc": [], "type": "json_invalid", "msg": str(exc)}]
    single = isinstance(payload, dict)
    items = [payload] if single else payload
    if not isinstance(items, list) or not items:
        message = "expected a listing object or a non-empty array of listings"
        return [], [{"index": None, "loc": [], "type": "model_type", "msg": message}]
    if len(items) > MAX_LISTINGS_PER_REQUEST:
        message = f"at most {MAX_LISTINGS_PER_REQUEST} listings per request"
        return [], [{"index": None, "loc": [], "type": "too_long", "msg": message}]
    now = utc_now()
    listings: list[Listing] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            item = {"auction_id": f"request-{index}", "listed_at": now, **item}
        try:
            listings.append(Listing.model_validate(item))
        except ValidationError as exc:
            errors.extend({"index": None if single else index, **e} for e in field_errors(exc))
    return (listings, []) if not errors else ([], errors)
