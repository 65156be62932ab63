"""Fixtures the target test modules share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from intacct_emulator.testing import EmulatorServer


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    """A real emulator on a free loopback port, one per test module."""
    with EmulatorServer() as server:
        yield server
