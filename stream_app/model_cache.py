"""The last champion a worker served, kept on local disk.

A worker that starts while the registry is down serves the cached version (and says so
in ``/health`` and in every output) instead of waiting: a scale-out during a registry
outage still scores. Only the champion is cached, one version per model, written
atomically, so a crash mid-write leaves the previous copy intact.

>>> import tempfile
>>> cache = ModelCache(Path(tempfile.mkdtemp()))
>>> cache.save("price", "3", {"a pipeline": "stand-in"})
>>> cache.load("price")
('3', {'a pipeline': 'stand-in'})
>>> cache.load("another") is None
True
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ModelCache:
    """One file per model name, holding the version and the pipeline together."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, model_name: str) -> Path:
        return self.directory / f"{model_name}.pkl"

    def save(self, model_name: str, version: str, pipeline: Any) -> None:
        """Keep ``pipeline`` as the cached champion of ``model_name``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        entry = {"version": version, "saved_at": time.time(), "pipeline": pipeline}
        _atomic_write(self.path(model_name), pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))

    def load(self, model_name: str) -> tuple[str, Any] | None:
        """The cached ``(version, pipeline)``, or None when there is none (or it is unreadable)."""
        path = self.path(model_name)
        try:
            entry = pickle.loads(path.read_bytes())
            return str(entry["version"]), entry["pipeline"]
        except FileNotFoundError:
            return None
        except Exception:
            log.exception("the cached model %s is unreadable; ignoring it", path)
            return None


def _atomic_write(path: Path, data: bytes) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
