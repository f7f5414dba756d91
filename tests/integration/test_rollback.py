"""Rolling the champion back against the real MLflow registry, and announcing it on Kafka."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from gavel.schemas import ModelAction, ModelUpdate
from gavel.settings import Settings
from gavel.topics import MODELS_UPDATES
from producers.sources.synthetic import generate_auctions
from shell import registry
from tests.helpers import consume
from trainer.alert_decision import PromotionRecord, TrainerState
from trainer.service import TrainerService
from trainer.split import TimeSplit, time_split
from trainer.training import train_and_register

pytestmark = pytest.mark.integration

TINY_XGB = {"n_estimators": 40, "early_stopping_rounds": 5}


@pytest.fixture(scope="module")
def split() -> TimeSplit:
    frame = generate_auctions(6000, start="2015-01-01", end="2015-03-01", seed=5)
    return time_split(frame, "2015-02-01", test_days=28)


def register(split: TimeSplit, settings: Settings) -> str:
    return train_and_register(split, settings, source="test", xgb_params=TINY_XGB).version


def champion_and_previous(settings: Settings, split: TimeSplit) -> tuple[MlflowClient, str, str]:
    """Two registered versions with champion = the second and previous = the first."""
    first = register(split, settings)
    second = register(split, settings)  # margin 0: it may or may not have been promoted
    client = registry.connect(settings)
    registry.promote(client, settings.model_name, second, "test")
    assert aliases(client, settings.model_name) == {"champion": second, "previous": first}
    return client, first, second


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    return {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}


def tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    found = client.get_model_version(name, version).tags
    return {k.removeprefix(registry.TAG_PREFIX): v for k, v in found.items()}


def test_rollback_restores_the_previous_champion_and_a_second_one_undoes_it(
    isolated: Settings, split: TimeSplit
) -> None:
    name = isolated.model_name
    client, v1, v2 = champion_and_previous(isolated, split)

    assert registry.rollback(client, name, "worse after promotion") == (v1, v2)
    assert aliases(client, name) == {"champion": v1, "previous": v2}
    assert registry.champion(client, name).version == v1
    demoted, restored = tags(client, name, v2), tags(client, name, v1)
    assert demoted["role"] == "rolled_back"
    assert demoted["rollback_reason"] == "worse after promotion"
    assert "demoted_at" in demoted
    assert restored["role"] == "champion"
    assert restored["promotion_reason"] == "rollback: worse after promotion"
    rows = {row["version"]: row for row in registry.model_versions(client, name)}
    assert rows[v1]["aliases"] == "champion" and rows[v2]["aliases"] == "previous"
    assert rows[v2]["role"] == "rolled_back"

    assert registry.rollback(client, name, "undo") == (v2, v1)
    assert aliases(client, name) == {"champion": v2, "previous": v1}
    assert tags(client, name, v1)["role"] == "rolled_back"
    assert tags(client, name, v1)["rollback_reason"] == "undo"
    assert tags(client, name, v2)["role"] == "champion"
    assert tags(client, name, v2)["promotion_reason"] == "rollback: undo"

    # A previous version but no champion: nothing to roll back from.
    client.delete_registered_model_alias(name, registry.CHAMPION)
    with pytest.raises(registry.RollbackError, match="has no champion"):
        registry.rollback(client, name, "again")
    assert aliases(client, name) == {"previous": v1}


def test_rollback_needs_a_previous_version(isolated: Settings, split: TimeSplit) -> None:
    name = isolated.model_name
    client = registry.connect(isolated)
    with pytest.raises(registry.RollbackError, match="no version with alias 'previous'"):
        registry.rollback(client, name, "nothing registered yet")

    only = register(split, isolated)
    assert aliases(client, name) == {"champion": only}
    with pytest.raises(registry.RollbackError, match=f"{name} has no version with alias"):
        registry.rollback(client, name, "a first champion")
    assert aliases(client, name) == {"champion": only}
    assert tags(client, name, only)["role"] == "champion"


def test_the_service_rollback_announces_it_on_models_updates(
    isolated: Settings, split: TimeSplit
) -> None:
    client, v1, v2 = champion_and_previous(isolated, split)
    service = TrainerService(isolated)
    service.store.save(
        TrainerState(
            last_trained_at=1.0,
            seen_alerts=["a-1"],
            last_promotion=PromotionRecord(
                version=v2, previous_version=v1, previous_mape=0.1, at=1.0
            ),
        )
    )

    update = service.rollback("test")

    assert update.action is ModelAction.ROLLED_BACK
    assert (update.version, update.champion_version, update.previous_version) == (v1, v1, v2)
    assert update.reason == "test" and update.alert_id is None
    assert aliases(client, isolated.model_name) == {"champion": v1, "previous": v2}

    records = consume(isolated, MODELS_UPDATES, until=lambda found: len(found) >= 1, timeout_s=30)
    assert len(records) == 1
    assert records[0].key == isolated.model_name
    announced = ModelUpdate.model_validate_json(records[0].value)
    assert announced == update
    assert (
        announced.action is ModelAction.ROLLED_BACK and announced.model_name == isolated.model_name
    )

    state = service.store.load()
    assert state.last_promotion is None  # no second auto-rollback of the same promotion
    assert state.seen_alerts == ["a-1"] and state.last_trained_at == 1.0
    decision = service.store.decisions(limit=1)[0]
    assert decision["decision"] == "rollback"
    assert decision["reason"] == "test" and decision["version"] == v1
