"""Train, register and promote against the real MLflow server, then load the champion back."""

from __future__ import annotations

import math

import mlflow
import numpy as np
import pytest

from gavel.settings import Settings
from producers.sources.synthetic import generate_auctions
from shell import registry
from trainer.split import time_split
from trainer.training import REFERENCE_ROWS, features_and_target, train_and_register

pytestmark = pytest.mark.integration

SMALL_XGB = {"n_estimators": 80, "early_stopping_rounds": 10}


@pytest.fixture(scope="module")
def auctions():
    return generate_auctions(8000, start="2015-01-01", end="2015-03-01", seed=3)


def test_first_training_registers_a_champion_that_loads_by_alias(
    isolated: Settings, auctions
) -> None:
    split = time_split(auctions, "2015-02-01", test_days=28)
    result = train_and_register(split, isolated, source="test", xgb_params=SMALL_XGB)

    assert result.promoted and result.decision.reason == "no champion yet"
    assert math.isfinite(result.metrics["test_mape"]) and result.metrics["test_mape"] < 0.5
    assert math.isfinite(result.metrics["test_mmr_mape"])

    champion = mlflow.sklearn.load_model(f"models:/{isolated.model_name}@champion")
    features, _ = features_and_target(split.test.head(50))
    prices = champion.predict(features)
    assert prices.shape == (50,) and np.isfinite(prices).all() and (prices > 0).all()

    client = registry.connect(isolated)
    info = registry.champion(client, isolated.model_name)
    assert info is not None and info.version == result.version
    assert info.reference_mape == pytest.approx(result.metrics["test_mape"])
    version = client.get_model_version(isolated.model_name, result.version)
    assert version.tags["gavel.role"] == "champion"
    assert version.tags["gavel.promotion_reason"] == "no champion yet"
    reference = registry.load_reference_sample(client, info.run_id)
    assert {"prediction", "sellingprice", "make", "listed_at"} <= set(reference.columns)
    # Every test row, held out, then rows of the training window up to the 5,000 cap.
    held_out = reference[reference["held_out"]]
    assert set(held_out["auction_id"]) == set(split.test["auction_id"])
    seen = reference[~reference["held_out"]]
    assert len(reference) == min(
        REFERENCE_ROWS, len(split.test) + len(split.train) + len(split.validation)
    )
    assert set(seen["auction_id"]) <= set(split.train["auction_id"]) | set(
        split.validation["auction_id"]
    )


def test_a_challenger_that_is_not_better_leaves_the_champion(isolated: Settings, auctions) -> None:
    split = time_split(auctions, "2015-02-01", test_days=28)
    first = train_and_register(split, isolated, source="test", xgb_params=SMALL_XGB)
    # The same data cannot beat itself by half.
    second = train_and_register(split, isolated, source="test", margin=0.5, xgb_params=SMALL_XGB)

    assert not second.promoted
    assert "not 50% better" in second.decision.reason
    assert second.champion_version == first.version
    client = registry.connect(isolated)
    assert registry.champion(client, isolated.model_name).version == first.version
    rejected = client.get_model_version(isolated.model_name, second.version)
    assert rejected.tags["gavel.role"] == "rejected"
    history = registry.model_versions(client, isolated.model_name)
    assert [row["version"] for row in history] == [second.version, first.version]
    assert history[1]["aliases"] == "champion"
