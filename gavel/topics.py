"""Topic names, keys and partitioning: the contract between services.

Every data topic is keyed by ``auction_id`` so that a listing, its score and
its sale land on the same partition number and outputs stay idempotent. Each topic is
bound to the schema class of its values:

>>> spec(PRICES_SCORED).value.__name__, spec(PRICES_SCORED).key
('ScoredPrice', 'auction_id')
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from gavel.schemas import DeadLetter, DriftAlert, Listing, ModelUpdate, Sale, ScoredPrice

AUCTIONS_LISTED = "auctions.listed"
AUCTIONS_SOLD = "auctions.sold"
PRICES_SCORED = "prices.scored"
AUCTIONS_DEADLETTER = "auctions.deadletter"
DRIFT_ALERTS = "drift.alerts"
MODELS_UPDATES = "models.updates"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str  # what the record key is
    value: type[BaseModel]  # the schema of the record value
    keyed_data: bool  # data topics scale with the partition setting; control topics stay at 1

    def partitions(self, data_partitions: int) -> int:
        return data_partitions if self.keyed_data else 1


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(AUCTIONS_LISTED, "auction_id", Listing, keyed_data=True),
    TopicSpec(AUCTIONS_SOLD, "auction_id", Sale, keyed_data=True),
    TopicSpec(PRICES_SCORED, "auction_id", ScoredPrice, keyed_data=True),
    TopicSpec(AUCTIONS_DEADLETTER, "auction_id (or none when unreadable)", DeadLetter, True),
    TopicSpec(DRIFT_ALERTS, "alert kind", DriftAlert, keyed_data=False),
    TopicSpec(MODELS_UPDATES, "model name", ModelUpdate, keyed_data=False),
)
_BY_NAME = {topic.name: topic for topic in TOPICS}


def spec(name: str) -> TopicSpec:
    """The spec of a topic by its (un-namespaced) name."""
    return _BY_NAME[name]
