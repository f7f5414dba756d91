"""Which models.updates events change the champion."""

from __future__ import annotations

import pytest

from gavel.schemas import ModelAction, ModelUpdate
from shell.updates import new_champion


def update(action: ModelAction, **fields: str) -> bytes:
    return ModelUpdate(action=action, model_name="price", version="4", **fields).to_json_bytes()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (update(ModelAction.PROMOTED, champion_version="4"), "4"),
        (update(ModelAction.PROMOTED), "4"),
        (update(ModelAction.ROLLED_BACK, champion_version="2"), "2"),
        (update(ModelAction.REJECTED, champion_version="3"), None),
        (b"not json", None),
        (None, None),
    ],
    ids=["promoted", "promoted-no-champion-field", "rolled-back", "rejected", "garbage", "empty"],
)
def test_new_champion(raw: bytes | None, expected: str | None) -> None:
    assert new_champion(raw, "price") == expected


def test_other_models_updates_are_ignored() -> None:
    assert new_champion(update(ModelAction.PROMOTED, champion_version="4"), "other") is None
