"""singer-sdk's standard tap test suite against the emulator, on a handful of everyday streams.

``get_tap_test_class`` needs the config (with the emulator's URL) when the class is built, i.e.
at import, so the emulator is started here and stopped by a module fixture.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from intacct_emulator.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_USERNAME
from intacct_emulator.testing import EmulatorServer
from tap_intacct.tap import TapIntacct

EVERYDAY = [
    "accounts-receivable/customer",
    "accounts-payable/vendor",
    "general-ledger/account",
    "company-config/department",
    "company-config/location",
    "company-config/contact",
]

_SERVER = EmulatorServer().start()
for _name in EVERYDAY:
    _SERVER.company.seed_object(_name, 40, 3)
for _key in range(1, 41):  # the seed leaves this number unset; give is_numeric values to check
    _SERVER.company.touch("accounts-payable/vendor", _key, defaultLeadTime=_key % 9)
_TOKENS = tempfile.TemporaryDirectory(prefix="tap-standard-")

CONFIG = {
    "base_url": _SERVER.base_url,
    "client_id": DEFAULT_CLIENT_ID,
    "client_secret": DEFAULT_CLIENT_SECRET,
    "username": DEFAULT_USERNAME,
    "token_store": str(Path(_TOKENS.name) / "tokens.json"),
    "objects": EVERYDAY,
    "page_size": 15,
}


@pytest.fixture(scope="module", autouse=True)
def _emulator_lifetime() -> Iterator[None]:
    yield
    _SERVER.stop()
    _TOKENS.cleanup()


StandardTests = get_tap_test_class(
    TapIntacct,
    config=CONFIG,
    suite_config=SuiteConfig(max_records_limit=60),
)


class TestTapIntacct(StandardTests):  # type: ignore[misc,valid-type]
    """The generated suite (tap, stream and attribute tests)."""
