"""Round trip: tap-intacct -> edit some records -> target-intacct changes exactly those.

The tap's Singer output is edited directly (the JSON-lines a target-jsonl would write are the
same records), then fed, whole, to target-intacct with the default upsert. Every record comes
back with its `key`, so each one is a PATCH; the unedited ones must come out unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from intacct_api.client import IntacctClient
from intacct_api.settings import ConnectionSettings
from intacct_emulator.testing import EmulatorServer
from tests.support.connection import demo_connection

BIN = Path(sys.executable).parent
VENDOR_PATH = "/objects/accounts-payable/vendor"


def snapshot(client: IntacctClient) -> dict[str, dict[str, Any]]:
    """Every vendor, full record by key, without the audit group (it moves on every write)."""
    keys = [
        row["key"]
        for row in client.query(
            {"object": "accounts-payable/vendor", "fields": ["key"], "size": 4000}
        ).json()["ia::result"]
    ]
    found = client.request("GET", f"{VENDOR_PATH}/{','.join(keys)}").json()["ia::result"]
    records = found if isinstance(found, list) else [found]
    return {r["key"]: {k: v for k, v in r.items() if k != "audit"} for r in records}


@pytest.mark.slow
def test_tap_edit_target_changes_exactly_the_edited_records(tmp_path: Path) -> None:
    with EmulatorServer(seed_records=6) as emulator:
        config = {
            **demo_connection(emulator.base_url, tmp_path),
            "objects": ["accounts-payable/vendor"],
            "results_path": str(tmp_path / "results.jsonl"),
        }
        config_path = tmp_path / "config.json"
        config_path.write_text(json.dumps(config))
        with IntacctClient(ConnectionSettings.from_config(config)) as client:
            before = snapshot(client)
        assert len(before) == 6

        tap = subprocess.run(
            [str(BIN / "tap-intacct"), "--config", str(config_path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        messages = [json.loads(line) for line in tap.stdout.splitlines() if line.strip()]
        records = [m for m in messages if m["type"] == "RECORD"]
        assert len(records) == 6
        edited = {records[1]["record"]["key"]: "Renamed One", records[4]["record"]["key"]: "Two"}
        for message in records:
            # real Intacct returns amounts as decimal strings, which the tap's schema admits
            for field in ("creditLimit", "totalDue", "discountPercent"):
                value = message["record"].get(field)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    message["record"][field] = f"{value:.2f}"
            message["record"]["creditLimit"] = message["record"].get("creditLimit") or "0.00"
            new_name = edited.get(message["record"]["key"])
            if new_name:
                message["record"]["name"] = new_name
        edited_input = tmp_path / "edited.singer"
        edited_input.write_text("".join(json.dumps(m) + "\n" for m in messages))

        target = subprocess.run(
            [
                str(BIN / "target-intacct"),
                "--config",
                str(config_path),
                "--input",
                str(edited_input),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert target.returncode == 0, target.stderr
        results = [
            json.loads(line) for line in Path(config["results_path"]).read_text().splitlines()
        ]
        assert [(r["status"], r["operation"]) for r in results] == [("ok", "update")] * 6

        with IntacctClient(ConnectionSettings.from_config(config)) as client:
            after = snapshot(client)
        for row in before.values():  # every record now carries creditLimit 0.00 when unset
            row["creditLimit"] = row.get("creditLimit") or 0
        changed = {key for key in before if before[key] != after[key]}
        assert changed == set(edited)
        for key, name in edited.items():
            assert after[key]["name"] == name
            assert {k: v for k, v in after[key].items() if k != "name"} == {
                k: v for k, v in before[key].items() if k != "name"
            }
