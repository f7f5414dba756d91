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

from gavel.schemas import ModelAction, ModelUpdate
from gavel.settings import Settings
from gavel.topics import MODELS_UPDATES
from shell.kafka import consumer_config

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


class UpdateFollower:
    """Follows ``models.updates`` from now on, in a throwaway consumer group of its own.

    The one way every service follows champion changes: a loop that has time between
    batches calls :meth:`poll` (the monitor), an event loop that must not block runs
    :meth:`start`, a daemon thread that calls ``on_champion(version)`` (the worker: an
    idle asyncio Kafka consumer next to Faust's was seen to delay the scoring agent).
    """

    def __init__(self, settings: Settings, service: str) -> None:
        self.settings = settings
        self.service = service
        self._consumer: Consumer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self, timeout_s: float = 0.0) -> list[str]:
        """The champion versions announced since the last call (at most a few)."""
        if self._consumer is None:
            group = f"{self.settings.group(self.service + '-updates')}-{uuid.uuid4().hex[:8]}"
            config = consumer_config(self.settings, group, **{"auto.offset.reset": "latest"})
            self._consumer = Consumer(config)
            self._consumer.subscribe([self.settings.topic(MODELS_UPDATES)])
        versions = []
        for message in self._consumer.consume(10, timeout=timeout_s):
            if message.error():
                continue
            version = new_champion(message.value(), self.settings.model_name)
            if version is not None:
                versions.append(version)
        return versions

    def start(self, on_champion: Callable[[str], None]) -> UpdateFollower:
        """Poll from a daemon thread, calling ``on_champion`` for each change."""

        def run() -> None:
            try:
                while not self._stop.is_set():
                    for version in self.poll(0.5):
                        on_champion(version)
            finally:
                self._close_consumer()

        self._thread = threading.Thread(target=run, name="models-updates", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        else:
            self._close_consumer()

    def _close_consumer(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
