"""Fixtures shared by the emulator test modules (a module may still define its own)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from intacct_api.disk_cache import CACHE_DIR_ENV, cache_root
from intacct_api.spec import default_registry
from intacct_emulator.company import Company
from intacct_emulator.testing import EmulatorServer

# The disk caches (spec index, compiled validators, catalogs) of this session: a folder of its
# own, so no test reads what another checkout or an earlier run left in the user's cache, and
# the subprocesses the tests start (which inherit the environment) share it. A session run
# with INTACCT_CACHE_DIR=off keeps the caches off (the suite must pass either way).
if cache_root() is not None:
    os.environ[CACHE_DIR_ENV] = tempfile.mkdtemp(prefix="intacct-test-cache-")
    atexit.register(shutil.rmtree, os.environ[CACHE_DIR_ENV], ignore_errors=True)


@pytest.fixture(scope="session")
def registry() -> Any:
    """The embedded spec registry (loaded once; read-only for every test)."""
    return default_registry()


@pytest.fixture
def company(registry: Any) -> Company:
    """A fresh in-memory company, driven directly (data-layer unit tests)."""
    return Company(registry)


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorServer]:
    """A real emulator on a free loopback port, one per test module."""
    with EmulatorServer() as server:
        yield server


@pytest.fixture
def api(emu: EmulatorServer) -> Iterator[httpx.Client]:
    """An authenticated HTTP client against a freshly reset emulator."""
    emu.reset()
    with httpx.Client(base_url=emu.base_url, headers=emu.auth_headers(), timeout=10) as client:
        yield client
