"""The trainer service lowers its own CPU priority (checked in a child process)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gavel.settings import Settings


def niceness_after(*calls: int) -> int:
    code = (
        "import os; from trainer.service import yield_cpu\n"
        + "".join(f"yield_cpu({n})\n" for n in calls)
        + "print(os.nice(0))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return int(result.stdout.strip())


@pytest.mark.skipif(os.nice(0) > 5, reason="this test process is already niced")
def test_the_trainer_lowers_its_priority_and_never_raises_it() -> None:
    assert niceness_after(7) == 7
    assert niceness_after(7, 3) == 7  # a lower value later is not an attempt to raise it
    assert niceness_after(0) == os.nice(0)


def test_the_default_leaves_the_cpu_to_scoring() -> None:
    assert Settings().trainer.nice == 10
