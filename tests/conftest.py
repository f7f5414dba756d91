"""Shared fixtures: the real local stack, isolated namespaces, and the shared sample."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from gavel.settings import PROJECT_ROOT, Settings

SAMPLE_CSV = Path(
    os.environ.get(
        "GAVEL_SAMPLE_CSV",
        PROJECT_ROOT.parent / "shared" / "data" / "car_auctions_sample.csv.gz",
    )
)


@pytest.fixture(scope="session")
def sample_csv() -> Path:
    """The shared Kaggle sample; tests that need it skip when it is absent."""
    if not SAMPLE_CSV.exists():
        pytest.skip(f"shared sample not found at {SAMPLE_CSV}")
    return SAMPLE_CSV


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """The local stack: reused when already healthy, otherwise started and stopped after."""
    from shell.stack import manager

    settings = Settings()
    running = {row.name for row in manager.status(settings, manager.CORE) if row.healthy}
    to_start = tuple(name for name in manager.CORE if name not in running)
    if to_start:
        manager.up(settings, manager.CORE, console=Console(stderr=True, quiet=True))
    yield settings
    delete_test_topics(settings)
    if to_start:
        manager.down(settings, to_start, console=Console(stderr=True, quiet=True))


# Every namespace of this test session starts with this prefix, so that the clean-up
# drops this session's topics only, never those of another session sharing the broker.
SESSION_PREFIX = f"tests-{uuid.uuid4().hex[:6]}-"


def fresh_namespace() -> str:
    """A fresh namespace for one test, under this session's prefix."""
    return f"{SESSION_PREFIX}{uuid.uuid4().hex[:8]}."


def delete_test_topics(settings: Settings) -> None:
    """Tests make a namespace each; drop their topics so the broker stays small."""
    from shell.kafka import delete_topics_with_prefix

    delete_topics_with_prefix(settings, SESSION_PREFIX)


@pytest.fixture
def isolated(stack: Settings, tmp_path: Path) -> Settings:
    """Settings with a fresh namespace (topics, groups, Redis keys) and model name."""
    from shell.kafka import ensure_topics

    tag = uuid.uuid4().hex[:8]
    settings = stack.replace(
        namespace=fresh_namespace(),
        model_name=f"gavel-test-{tag}",
        experiment_name="gavel-tests",
        reports_dir=tmp_path / "reports",
    )
    ensure_topics(settings)
    return settings
