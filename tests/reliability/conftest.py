"""Fixtures of the reliability suite and the summary it prints at the end of the session.

One emulator subprocess serves the whole package (start-up costs about a second); every test
starts from `reset()`: seeded data, no faults, no tokens, zeroed stats. The planted OAuth
client is registered at start so its secret is recognisable wherever it might leak.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from intacct_emulator.testing import EmulatorProcess
from reliability.harness import (
    COLLECTOR,
    PLANTED_CLIENT_ID,
    PLANTED_SECRET,
    PLANTED_USER,
    SEED,
    Collector,
)


@pytest.fixture(scope="session")
def collector() -> Collector:
    """The session's figures (a module singleton so the terminal-summary hook can reach it)."""
    return COLLECTOR


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[EmulatorProcess]:
    args = [
        "--seed-records",
        str(SEED),
        "--random-seed",
        "3",
        "--client",
        f"{PLANTED_CLIENT_ID}:{PLANTED_SECRET}:{PLANTED_USER}",
    ]
    with EmulatorProcess(args) as process:
        yield process


@pytest.fixture
def emulator(emulator_process: EmulatorProcess) -> EmulatorProcess:
    """The shared emulator, reset to its seeded state with no faults and no tokens."""
    emulator_process.reset()
    return emulator_process


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    """Print the figures the README quotes (only when this package's tests ran)."""
    if COLLECTOR.runs_completed == 0 and COLLECTOR.runs_stopped_cleanly == 0:
        return
    terminalreporter.section("reliability summary")
    for line in COLLECTOR.lines():
        terminalreporter.write_line(line)
