"""Tests for producers.corruption: each corruption is dead-lettered for the reason it declares."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from gavel.schemas import DeadLetterReason, Listing
from producers.corruption import CORRUPTIONS, corrupt, pick_corruptions
from stream_app.validation import Invalid, parse_listing

LISTING: dict[str, Any] = {
    "auction_id": "syn-1-00000042",
    "listed_at": "2015-03-02T15:04:05.000Z",
    "year": 2012,
    "make": "Ford",
    "model": "Fusion",
    "trim": "SE",
    "body": "Sedan",
    "transmission": "automatic",
    "state": "ca",
    "condition": 3.5,
    "odometer": 41000.0,
    "color": "black",
    "interior": None,
    "seller": "acme",
    "mmr": 9100.0,
    "vin": None,
}


def test_the_base_listing_is_valid() -> None:
    assert isinstance(parse_listing(orjson.dumps(LISTING)), Listing)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corruption_yields_its_declared_reason(kind: str) -> None:
    payload, reason = corrupt(LISTING, kind)
    assert isinstance(payload, bytes)
    assert reason is CORRUPTIONS[kind]
    parsed = parse_listing(payload)
    assert isinstance(parsed, Invalid), f"{kind} produced a valid listing"
    assert parsed.reason is reason, (kind, parsed.detail)


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corruption_breaks_one_thing_only(kind: str) -> None:
    payload, _ = corrupt(LISTING, kind)
    parsed = parse_listing(payload)
    assert isinstance(parsed, Invalid)
    if kind != "not_json":
        assert len(parsed.errors) == 1, parsed.errors
    assert LISTING["make"] == "Ford"  # the input dict is not modified


def test_not_json_payload_names_the_auction() -> None:
    payload, _ = corrupt(LISTING, "not_json")
    assert b"syn-1-00000042" in payload


def test_every_reason_of_the_payload_itself_is_covered() -> None:
    # Scoring and output failures, and oversized payloads, are not corruptions of a listing.
    not_payload = {
        DeadLetterReason.SCORING_FAILED,
        DeadLetterReason.OUTPUT_FAILED,
        DeadLetterReason.PAYLOAD_TOO_LARGE,
    }
    assert set(CORRUPTIONS.values()) == set(DeadLetterReason) - not_payload


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown corruption 'melted'; choose from") as caught:
        corrupt(LISTING, "melted")
    assert "missing_field" in str(caught.value)


@pytest.mark.parametrize("share", [0.02, 0.1, 0.3])
def test_pick_share_is_about_right(share: float) -> None:
    n = 20_000
    picks = pick_corruptions(n, share, seed=5)
    assert abs(len(picks) / n - share) < 0.15 * share
    assert all(0 <= index < n for index in picks)
    assert set(picks.values()) <= set(CORRUPTIONS)


def test_pick_cycles_through_kinds_evenly() -> None:
    picks = pick_corruptions(5000, 0.2, seed=1)
    ordered = [picks[index] for index in sorted(picks)]
    kinds = sorted(CORRUPTIONS)
    assert ordered[: len(kinds)] == kinds
    counts = Counter(picks.values())
    assert set(counts) == set(kinds)
    assert max(counts.values()) - min(counts.values()) <= 1


def test_pick_is_deterministic_by_seed() -> None:
    assert pick_corruptions(2000, 0.1, seed=3) == pick_corruptions(2000, 0.1, seed=3)
    assert pick_corruptions(2000, 0.1, seed=3) != pick_corruptions(2000, 0.1, seed=4)


def test_pick_nothing() -> None:
    assert pick_corruptions(1000, 0.0, seed=1) == {}
    assert pick_corruptions(0, 0.5, seed=1) == {}


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5])
def test_bad_share_is_rejected(share: float) -> None:
    with pytest.raises(ValueError, match=r"corrupt share must be in \[0, 1\)"):
        pick_corruptions(100, share, seed=1)
