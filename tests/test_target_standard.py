"""The singer-sdk standard target test suite against the emulator.

The suite sends arbitrary stream names (`test_array_data`, `TestCamelcase`, ...) and fields no
Intacct object has, so the config maps every stream (`streams: {"*": ...}`) to one object and
sets `on_error: continue`: records that cannot be written become error *results* (what the
suite checks is that the target reads every message shape without crashing, and raises where
the Singer spec says it must).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.target_tests import TargetRecordMissingRequiredProperty

from intacct_emulator.testing import EmulatorServer
from target_intacct.target import TargetIntacct

# Filled in by the class fixture below: the runner of every test reads this very dict.
CONFIG: dict[str, Any] = {
    "client_id": "demo-client",
    "client_secret": "demo-secret",
    "username": "admin@DEMO",
    "streams": {"*": {"object": "accounts-payable/vendor"}},
    "on_error": "continue",
}

# Beyond the 16 default tests we also run one the SDK defines but leaves out of its default
# suite. Not run, with the reason:
# * TargetMultipleStateMessages expects a STATE relayed after every few records; the SDK emits
#   STATE only after a full drain (end of input, 5-minute max age, SIGTERM), which is exactly
#   the "state only after its records are written" guarantee we rely on. The SDK itself keeps
#   this test out of its suite ("fix behavior in SDK").
EXTRA = SingerTestSuite(kind="target", tests=[TargetRecordMissingRequiredProperty])

StandardTargetTests = get_target_test_class(TargetIntacct, config=CONFIG, custom_suites=[EXTRA])


class TestTargetIntacctStandard(StandardTargetTests):  # type: ignore[misc,valid-type]
    """All 16 default tests apply, plus one extra; one emulator per class."""

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _emulator(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
        folder: Path = tmp_path_factory.mktemp("target-standard")
        with EmulatorServer() as emulator:
            CONFIG.update(
                base_url=emulator.base_url,
                token_store=str(folder / "tokens.json"),
                results_path=str(folder / "results.jsonl"),
            )
            yield emulator
