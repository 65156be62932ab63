"""What the target's test modules share: a connection config for the emulator, running the
real `target-intacct` binary, reading its results file and the emulator's records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from intacct_api.client import IntacctClient
from intacct_api.settings import ConnectionSettings
from intacct_emulator.testing import EmulatorServer
from tests.support.connection import demo_connection

TARGET = str(Path(sys.executable).with_name("target-intacct"))
VENDORS = "accounts_payable__vendor"
BILLS = "accounts_payable__bill"
VENDOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": ["string", "null"]},
        "status": {"type": ["string", "null"]},
        "creditLimit": {"type": ["number", "null"]},
    },
}
"""A vendor stream as a spreadsheet or another system would send it."""
BILL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "billNumber": {"type": "string"},
        "vendor": {"type": "object", "properties": {"id": {"type": "string"}}},
        "createdDate": {"type": "string", "format": "date"},
        "dueDate": {"type": "string", "format": "date"},
        "currency": {"type": "object", "properties": {"txnCurrency": {"type": "string"}}},
    },
}
"""An AP bill stream: bills have no natural key, so identical ones are separate bills."""


def bill(number: str, vendor_id: str = "V-00001") -> dict[str, Any]:
    """A minimal valid AP bill of ``vendor_id``."""
    return {
        "billNumber": number,
        "vendor": {"id": vendor_id},
        "createdDate": "2026-01-05",
        "dueDate": "2026-02-04",
        "currency": {"txnCurrency": "USD"},
    }


def emulator_config(emulator: EmulatorServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """A target config for the (freshly reset) emulator, results and tokens in ``tmp_path``."""
    emulator.reset()
    return {
        **demo_connection(emulator.base_url, tmp_path),
        "results_path": str(tmp_path / "results.jsonl"),
        **extra,
    }


def run_target(
    config: dict[str, Any], input_path: Path | None, tmp_path: Path, *, text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed binary on a Singer file (or ``text`` on stdin), in ``tmp_path``."""
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config))
    argv = [TARGET, "--config", str(config_path)]
    if input_path is not None:
        argv += ["--input", str(input_path)]
    return subprocess.run(
        argv,
        input=text,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )


def results_of(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The results file's lines, parsed."""
    lines = Path(config["results_path"]).read_text().splitlines()
    return [json.loads(line) for line in lines]


def query_all(config: dict[str, Any], object_name: str, fields: list[str]) -> list[dict[str, Any]]:
    """Every record of an object as the emulator holds it (key order)."""
    settings = ConnectionSettings.from_config(config)
    with IntacctClient(settings) as client:
        body = {"object": object_name, "fields": fields, "size": 4000, "orderBy": [{"key": "asc"}]}
        rows: list[dict[str, Any]] = client.query(body).json()["ia::result"]
        return rows
