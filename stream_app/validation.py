"""Listing validation: the schema first, then value ranges, each failure with a reason.

>>> parse_listing(b"not json").reason
<DeadLetterReason.NOT_JSON: 'not_json'>
>>> parse_listing(b'{"auction_id": "a1"}').reason
<DeadLetterReason.SCHEMA: 'schema'>
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gavel.schemas import DeadLetterReason, Listing

_NOT_JSON = {"json_invalid", "json_type"}
# Well-formed values outside what a listing can plausibly hold.
_OUT_OF_RANGE = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "value_error",
    "finite_number",
}


@dataclass(frozen=True)
class Invalid:
    """Why a payload is not a valid listing."""

    reason: DeadLetterReason
    detail: str
    errors: list[dict[str, Any]] = field(default_factory=list)


def field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Per-field errors, JSON-safe, without echoing whole payloads back."""
    return [
        {"loc": [str(part) for part in error["loc"]], "type": error["type"], "msg": error["msg"]}
        for error in exc.errors(include_url=False, include_input=False)
    ]


def classify(errors: list[dict[str, Any]]) -> DeadLetterReason:
    types = {error["type"] for error in errors}
    if types & _NOT_JSON:
        return DeadLetterReason.NOT_JSON
    if types <= _OUT_OF_RANGE:
        return DeadLetterReason.OUT_OF_RANGE
    return DeadLetterReason.SCHEMA


def describe(errors: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(e['loc']) or 'payload'}: {e['msg']}" for e in errors[:5]]
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


def parse_listing(raw: bytes | str | None) -> Listing | Invalid:
    """A :class:`Listing` from raw JSON, or an :class:`Invalid` saying why not."""
    if raw is None or raw in (b"", ""):
        return Invalid(DeadLetterReason.NOT_JSON, "empty payload")
    try:
        return Listing.model_validate_json(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        return Invalid(classify(errors), describe(errors), errors)
