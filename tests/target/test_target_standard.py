"""The singer-sdk standard target test suite against the emulator.

The suite sends arbitrary stream names (`test_array_data`, `TestCamelcase`, ...) and fields no
Intacct object has, so the config maps every stream (`streams: {"*": ...}`) to one object and
sets `on_error: continue`: records that cannot be written become error *results* (what the
suite checks is that the target reads every message shape without crashing, and raises where
the Singer spec says it must).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import singer_sdk.testing
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
# * TargetMultipleStateMessages expects the exact STATE sequence the SDK's own drain schedule
#   produces. This target emits a STATE as soon as every record before it has its result on
#   disk, which depends on when batches come back from Intacct, not on a record count; the
#   guarantee is pinned by tests/target/test_target_truth.py (STATE mid-load, never ahead of
#   results).
#   The SDK itself keeps this test out of its suite ("fix behavior in SDK").
# Replaced, with the reason: three default tests expect the target to raise on a bad message
# (invalid SCHEMA, RECORD before SCHEMA, missing key property). This target's promise is that
# no input line aborts a load: each becomes an error result naming its line and the load goes
# on (issue 11). The methods of the same names below run the SDK's very input files and assert
# that behaviour instead.
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

    # -- replaced (see the note at the top) ----------------------------------------------------

    def test_target_invalid_schema(self, tmp_path: Path) -> None:
        results = _run_sdk_file("invalid_schema", tmp_path)
        assert [(r["line"], r["status"]) for r in results] == [(1, "error")]
        assert "properties" in results[0]["error"]

    def test_target_record_before_schema(self, tmp_path: Path) -> None:
        results = sorted(_run_sdk_file("record_before_schema", tmp_path), key=lambda r: r["line"])
        assert [r["line"] for r in results] == [1, 3]
        assert results[0]["status"] == "error"
        assert "before a corresponding schema" in results[0]["error"]
        # the record after it was read and processed: the vendor object has no 'metric'
        assert results[1]["status"] == "error"
        assert "field 'metric'" in results[1]["error"]

    def test_target_record_missing_key_property(self, tmp_path: Path) -> None:
        results = _run_sdk_file("record_missing_key_property", tmp_path)
        assert [(r["line"], r["status"]) for r in results] == [(2, "error")]
        assert "MissingKeyPropertiesError" in results[0]["error"]


def _run_sdk_file(name: str, tmp_path: Path) -> list[dict[str, Any]]:
    """Run the target in-process on one of the SDK's own test input files; its results."""
    source = Path(singer_sdk.testing.__file__).parent / "target_test_streams" / f"{name}.singer"
    results_path = tmp_path / "results.jsonl"
    target = TargetIntacct(config=CONFIG | {"results_path": str(results_path)})
    with source.open() as handle:
        target.listen(handle)
    return [json.loads(line) for line in results_path.read_text().splitlines()]
