"""Following ``models.updates``: which events change the champion, and how a process
reads every one of them (a throwaway consumer group of its own).

>>> from gavel.schemas import ModelAction, ModelUpdate
>>> event = ModelUpdate(action=ModelAction.PROMOTED, model_name="m", version="3",
...                     champion_version="3").to_json_bytes()
>>> new_champion(event, "m"), new_champion(event, "other")
('3', None)
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer
from pydantic import ValidationError

from gavel.kafka import consumer_config
from gavel.schemas import ModelAction, ModelUpdate
from gavel.settings import Settings
from gavel.topics import MODELS_UPDATES

log = logging.getLogger(__name__)

CHAMPION_CHANGES = {ModelAction.PROMOTED, ModelAction.ROLLED_BACK}


def new_champion(raw: bytes | None, model_name: str) -> str | None:
    """The new champion version announced by a ``models.updates`` value, if it is one."""
    try:
        update = ModelUpdate.model_validate_json(raw or b"")
    except ValidationError as exc:
        log.warning("ignoring unreadable models.updates event: %s", exc)
        return None
    if update.model_name != model_name or update.action not in CHAMPION_CHANGES:
        return None
    return update.champion_version or update.version


def updates_consumer(settings: Settings, service: str) -> Consumer:
    """A consumer of ``models.updates`` from now on, in a throwaway group of its own."""
    group = f"{settings.group(service + '-updates')}-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(consumer_config(settings, group, **{"auto.offset.reset": "latest"}))
    consumer.subscribe([settings.topic(MODELS_UPDATES)])
    return consumer


class UpdateFollower:
    """Calls ``on_champion(version)`` from a daemon thread for each champion change.

    A thread with a C consumer, rather than a consumer on the service's event loop:
    an idle asyncio Kafka consumer next to Faust's was seen to delay the scoring agent.
    """

    def __init__(
        self, settings: Settings, service: str, on_champion: Callable[[str], None]
    ) -> None:
        self.settings = settings
        self.service = service
        self.on_champion = on_champion
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="models-updates", daemon=True)

    def start(self) -> UpdateFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        consumer = updates_consumer(self.settings, self.service)
        try:
            while not self._stop.is_set():
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                version = new_champion(message.value(), self.settings.model_name)
                if version is not None:
                    self.on_champion(version)
        finally:
            consumer.close()
