"""The demo warehouse's typed layer: DECIMAL amounts with exact sums, or no view at all.

Raw tables are made the way target-duckdb 0.8.0 makes them from tap-intacct's schema
(lower-cased names, nested objects flattened one level with ``__``, amounts and dates as
VARCHAR, timestamps as TIMESTAMP); ``demo/warehouse_types.py`` must lay typed views over them
from the tap's catalog. ``make demo`` checks the same against the emulator on real loads.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from intacct_api.spec import default_registry
from tap_intacct.discovery import object_definition
from tap_intacct.settings import TapOptions
from tests.support.paths import ROOT

sys.path.insert(0, str(ROOT / "demo"))

from warehouse_types import create_typed_views

STREAM = "general_ledger__journal_entry_line"
AMOUNTS = ["19177.85", "0.10", "-5.05", None, "1000000000.01", "0.20"]


def catalog_file(tmp_path: Path) -> Path:
    info = default_registry().object("general-ledger/journal-entry-line")
    definition = object_definition(STREAM, info.name, info.record_schema(), TapOptions())
    path = tmp_path / "catalog.json"
    path.write_text(
        json.dumps({"streams": [{"tap_stream_id": STREAM, "schema": definition.schema}]})
    )
    return path


def raw_warehouse(tmp_path: Path, amounts: list[str | None]) -> Path:
    database = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("create schema intacct")
        con.execute(
            f'create table intacct."{STREAM}" (key varchar, txnamount varchar, '
            "entrydate varchar, _modified_at timestamp, glaccount__id varchar)"
        )
        for i, amount in enumerate(amounts):
            con.execute(
                f'insert into intacct."{STREAM}" values (?, ?, ?, ?, ?)',
                [str(i), amount, "2025-11-20", "2025-11-20 10:00:00", f"A{i % 2}"],
            )
    return database


def test_typed_views_give_decimal_amounts_with_exact_sums(tmp_path: Path) -> None:
    database = raw_warehouse(tmp_path, AMOUNTS)
    decimals = create_typed_views(database, catalog_file(tmp_path), "intacct", "intacct_typed")
    assert "txnamount" in decimals[STREAM]
    with duckdb.connect(str(database), read_only=True) as con:
        types = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'intacct_typed' and table_name = ?",
                [STREAM],
            ).fetchall()
        )
        sums = dict(
            con.execute(
                f'select glaccount__id, sum(txnamount) from intacct_typed."{STREAM}" group by 1'
            ).fetchall()
        )
    assert types["txnamount"].startswith("DECIMAL(38,")
    assert types["entrydate"] == "DATE"
    assert types["_modified_at"] == "TIMESTAMP WITH TIME ZONE"
    expected: dict[str, Decimal] = {}
    for i, amount in enumerate(AMOUNTS):
        if amount is not None:
            expected[f"A{i % 2}"] = expected.get(f"A{i % 2}", Decimal(0)) + Decimal(amount)
    assert sums == expected


def test_no_view_that_would_round(tmp_path: Path) -> None:
    database = raw_warehouse(tmp_path, ["1.12345678901"])  # 11 decimals, the scale is 10
    with pytest.raises(ValueError, match="would round"):
        create_typed_views(database, catalog_file(tmp_path), "intacct", "intacct_typed")
