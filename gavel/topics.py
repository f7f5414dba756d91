"""Topic names, keys and partitioning: the contract between services.

Every data topic is keyed by ``auction_id`` so that a listing, its score and
its sale land on the same partition number and outputs stay idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass

AUCTIONS_LISTED = "auctions.listed"
AUCTIONS_SOLD = "auctions.sold"
PRICES_SCORED = "prices.scored"
AUCTIONS_DEADLETTER = "auctions.deadletter"
DRIFT_ALERTS = "drift.alerts"
MODELS_UPDATES = "models.updates"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    value: str
    keyed_data: bool  # data topics scale with the partition setting; control topics stay at 1

    def partitions(self, data_partitions: int) -> int:
        return data_partitions if self.keyed_data else 1


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(AUCTIONS_LISTED, "auction_id", "Listing", keyed_data=True),
    TopicSpec(AUCTIONS_SOLD, "auction_id", "Sale", keyed_data=True),
    TopicSpec(PRICES_SCORED, "auction_id", "ScoredPrice", keyed_data=True),
    TopicSpec(AUCTIONS_DEADLETTER, "auction_id (or none when unreadable)", "DeadLetter", True),
    TopicSpec(DRIFT_ALERTS, "alert kind", "DriftAlert", keyed_data=False),
    TopicSpec(MODELS_UPDATES, "model name", "ModelUpdate", keyed_data=False),
)
