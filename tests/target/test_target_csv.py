"""A spreadsheet into Intacct: tap-csv-folder | target-intacct, and dry run = real run (issue 13).

A CSV source sends every cell as text (`""` for a blank one) in an all-string schema. The target
reads that text by the type the Intacct field has: a blank optional cell is no value, `yes`/`0`
are booleans, numeric text is an exact decimal, a bad cell fails its own row (named by its
input line, its ordinal in the stream and its row in the file) with the reason in the log.

The CSV tap is `tap-csv-folder` from PyPI (built on singer-sdk's filesystem tap, in its own venv
made by `make test`, like Meltano would give it): MeltanoLabs' `tap-csv` is only published as a
git repository, which this project's machines cannot reach.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from intacct_api.client import IntacctClient
from intacct_api.settings import ConnectionSettings
from intacct_emulator.testing import EmulatorServer
from tests.support.paths import ROOT
from tests.support.target_runs import emulator_config, run_target

TAP_CSV = ROOT / ".venv-tap-csv" / "bin" / "tap-csv-folder"
VENDOR = "accounts-payable/vendor"

CSV = """id,name,status,creditLimit,isOnHold,paymentPriority
CSV-1,One,active,100.50,false,high
CSV-2,Two,,,yes,
CSV-3,,inactive,5,no,
CSV-4,Four,bogus,1,0,
CSV-5,Five,active,12.3x,1,
CSV-6,Six,inactive,1e2,TRUE,low
CSV-7,Seven,active,7,maybe,
"""
VALID = {"CSV-1", "CSV-2", "CSV-6"}


@pytest.fixture
def config(emulator: EmulatorServer, tmp_path: Path) -> dict[str, Any]:
    return emulator_config(emulator, tmp_path, operation="create", on_error="continue")


def tap_output(tmp_path: Path) -> bytes:
    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "accounts_payable__vendor.csv").write_text(CSV)
    tap_config = tmp_path / "tap.json"
    tap_config.write_text(
        json.dumps({"filesystem": "local", "path": str(folder), "read_mode": "one_stream_per_file"})
    )
    assert TAP_CSV.exists(), "run `make test` (it installs tap-csv-folder in .venv-tap-csv)"
    done = subprocess.run(
        [str(TAP_CSV), "--config", str(tap_config)], capture_output=True, timeout=120, check=True
    )
    return done.stdout


def results_of(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for line in Path(config["results_path"]).read_text().splitlines()]
    return {row["request"]["id"]: row for row in rows}


def test_csv_rows_are_read_by_intacct_field_types_and_bad_rows_are_named(
    config: dict[str, Any], tmp_path: Path
) -> None:
    done = run_target(config, None, tmp_path, text=tap_output(tmp_path).decode())
    assert done.returncode == 0, done.stderr
    results = results_of(config)
    assert {i for i, r in results.items() if r["status"] == "ok"} == VALID
    assert "field 'name': is required on create and may not be blank" in results["CSV-3"]["error"]
    assert "field 'status'" in results["CSV-4"]["error"]
    assert "field 'creditLimit'" in results["CSV-5"]["error"]
    assert "field 'isOnHold'" in results["CSV-7"]["error"]
    # named by input line, ordinal in the stream and row in the CSV file (header = row 1)
    assert "record 3 (source row 4)" in results["CSV-3"]["error"]
    # the log quotes the first failures with their reasons, then the counts
    log = done.stderr
    assert "First 4 of 4 failed record(s)" in log
    assert "source row 5" in log
    assert "failed 4" in log

    settings = ConnectionSettings.from_config(config)
    with IntacctClient(settings) as client:
        fields = ["id", "status", "creditLimit", "isOnHold", "paymentPriority"]
        body = {"object": VENDOR, "fields": fields, "size": 100}
        stored = {row["id"]: row for row in client.query(body).json()["ia::result"]}
    assert set(stored) == VALID
    assert stored["CSV-1"]["isOnHold"] is False
    assert stored["CSV-2"]["isOnHold"] is True
    assert stored["CSV-2"]["paymentPriority"] in (None, "")  # blank cell: no value
    assert stored["CSV-6"]["isOnHold"] is True
    assert float(stored["CSV-1"]["creditLimit"]) == 100.5
    assert float(stored["CSV-6"]["creditLimit"]) == 100


def test_dry_run_judges_every_row_as_intacct_does(
    emulator: EmulatorServer, config: dict[str, Any], tmp_path: Path
) -> None:
    """The same rows with and without dry run: the same verdict for every row, no writes."""
    messages = tap_output(tmp_path)
    dry = run_target(config | {"dry_run": True}, None, tmp_path, text=messages.decode())
    assert dry.returncode == 0, dry.stderr
    verdict_dry = {i: r["status"] for i, r in results_of(config).items()}
    assert emulator.requests() == {}
    real = run_target(config, None, tmp_path, text=messages.decode())
    assert real.returncode == 0, real.stderr
    verdict_real = {i: r["status"] for i, r in results_of(config).items()}
    ok_dry = {i for i, s in verdict_dry.items() if s == "ok"}
    assert ok_dry == {i for i, s in verdict_real.items() if s == "ok"} == VALID


PARITY_CASES: list[tuple[str, dict[str, Any]]] = [
    (VENDOR, {"id": "P-1", "name": "fine"}),
    (VENDOR, {"id": "P-2", "name": ""}),
    (VENDOR, {"id": "", "name": "no id"}),
    (VENDOR, {"id": "P-4", "name": "n", "status": "dormant"}),
    (VENDOR, {"id": "P-5", "name": "n", "status": ""}),
    (VENDOR, {"id": "P-6", "name": "n", "isOnHold": "maybe"}),
    (VENDOR, {"id": "P-7", "name": "n", "isOnHold": "No"}),
    (VENDOR, {"id": "P-8", "name": "n", "creditLimit": "12.5.1"}),
    (VENDOR, {"id": "P-9", "name": "n", "creditLimit": "1e3"}),
    (VENDOR, {"id": "P-10", "name": 42}),
    (VENDOR, {"id": "P-11", "name": "n", "nonsense": 1}),
    (VENDOR, {"id": "P-12", "name": "n", "contacts": "not an object"}),
    (VENDOR, {"id": "P-13", "name": "n", "state": "x"}),
    (
        "accounts-payable/bill",
        {
            "vendor": {"id": "P-1"},
            "createdDate": "2026-02-30",
            "dueDate": "2026-03-01",
            "currency": {"txnCurrency": "USD"},
        },
    ),
    (
        "accounts-payable/bill",
        {
            "vendor": {"id": "P-1"},
            "createdDate": "2026-02-03T10:00:00Z",
            "dueDate": "2026-03-01",
            "currency": {"txnCurrency": "USD"},
        },
    ),
    (
        "accounts-payable/bill",
        {
            "vendor": {"id": ""},
            "createdDate": "2026-02-03",
            "dueDate": "2026-03-01",
            "currency": {"txnCurrency": "USD"},
        },
    ),
    (
        "accounts-payable/bill",
        {
            "vendor": {"id": "P-1"},
            "createdDate": "2026-02-03",
            "dueDate": "soon",
            "currency": {"txnCurrency": "USD"},
        },
    ),
]


def test_dry_run_and_real_run_agree_on_every_rule_the_server_applies(
    emulator: EmulatorServer, config: dict[str, Any], registry: Any
) -> None:
    """Each case through the engine twice: dry run (no API) and a real create. A record the
    dry run passes and Intacct refuses (or the reverse) is a rule the dry run is missing."""
    from intacct_api.mutate import MutateEngine

    settings = ConnectionSettings.from_config(config)
    dry_engine = MutateEngine(registry, dry_run=True)
    with IntacctClient(settings) as client:
        real_engine = MutateEngine(registry, client)
        disagreements = []
        for object_name, record in PARITY_CASES:
            (dry,) = dry_engine.mutate(object_name, [record], operation="create")
            (real,) = real_engine.mutate(object_name, [record], operation="create")
            if dry.status != real.status:
                disagreements.append((record, dry.status, real.status, real.error))
    assert not disagreements
