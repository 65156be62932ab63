"""The query service's flat-row storage stays in sync with the stored bodies.

Pinned here: every write path keeps ``flat`` in step with ``data``; a database from before the
column (no ``flat``) is upgraded on open and filled lazily by the first query that reads a row;
a body rewritten without its flat form (an older emulator) is never served stale; a free-form
leaf holding an object is returned whole, as the nested path does.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from intacct_emulator.company import Company
from intacct_emulator.store import decode

CUSTOMER = "accounts-receivable/customer"
TS = "audit.modifiedDateTime"


def _names(company: Company) -> dict[str, Any]:
    rows = company.query(
        {"object": CUSTOMER, "fields": ["key", "name", TS], "size": 100}, entity=None
    )["ia::result"]
    return {r["key"]: r["name"] for r in rows}


def _flats(company: Company) -> list[tuple[int, Any]]:
    return company.store.select(CUSTOMER, [], [], columns="key, flat")


def test_every_write_path_keeps_flat_in_sync(registry: Any) -> None:
    company = Company(registry)
    status, _ = company.create(
        CUSTOMER, {"id": "A", "name": "Alpha"}, entity=None, transaction=False
    )
    assert status == 201
    ref = company.insert(CUSTOMER, {"id": "B", "name": "Beta"})
    company.seed_object(CUSTOMER, 3, random_seed=1)
    key_a = company.store.key_for_id(CUSTOMER, "A")
    company.update(CUSTOMER, str(key_a), {"name": "Alpha 2"}, entity=None, transaction=False)
    company.touch(CUSTOMER, ref["key"], name="Beta 2")
    for key, flat in _flats(company):
        assert flat is not None
        body = company.raw(CUSTOMER, key)
        assert body is not None
        assert decode(flat)["name"] == body.get("name")
    names = _names(company)
    assert names[str(key_a)] == "Alpha 2"
    assert names[ref["key"]] == "Beta 2"
    company.delete(CUSTOMER, [ref["key"]], entity=None, transaction=False)
    assert ref["key"] not in _names(company)


def test_old_database_is_upgraded_and_filled_lazily(registry: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    company = Company(registry, db=path)
    company.insert(CUSTOMER, {"id": "A", "name": "Alpha"})
    company.insert(CUSTOMER, {"id": "B", "name": "Beta"})
    expected = _names(company)
    company.close()
    conn = sqlite3.connect(path)  # make it look like a database written before the column
    conn.execute("DROP TRIGGER records_flat_stale")
    conn.execute("ALTER TABLE records DROP COLUMN flat")
    conn.commit()
    conn.close()

    reopened = Company(registry, db=path)
    assert all(flat is None for _, flat in _flats(reopened))
    assert _names(reopened) == expected
    assert all(flat is not None for _, flat in _flats(reopened))  # filled by that query
    reopened.close()


def test_body_rewritten_without_flat_is_not_served_stale(registry: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "mixed.db")
    company = Company(registry, db=path)
    ref = company.insert(CUSTOMER, {"id": "A", "name": "Alpha"})
    assert _names(company) == {ref["key"]: "Alpha"}
    body = company.raw(CUSTOMER, ref["key"])
    assert body is not None
    body["name"] = "Changed elsewhere"
    other = sqlite3.connect(path)  # what an older emulator's UPDATE looks like
    other.execute(
        "UPDATE records SET data = ? WHERE object = ? AND key = ?",
        (msgspec.json.encode(body), CUSTOMER, int(ref["key"])),
    )
    other.commit()
    other.close()
    assert _names(company) == {ref["key"]: "Changed elsewhere"}
    company.close()


def test_free_form_leaf_holding_an_object_is_returned_whole(registry: Any) -> None:
    company = Company(registry)
    company.insert(CUSTOMER, {"id": "ODD", "name": {"first": "Odd"}, "parent": "flat"})
    (row,) = company.query(
        {"object": CUSTOMER, "fields": ["name", "parent.id", "id"]}, entity=None
    )["ia::result"]
    assert row == {"name": {"first": "Odd"}, "parent.id": None, "id": "ODD"}


def test_total_count_follows_writes(registry: Any) -> None:
    company = Company(registry)
    body = {"object": CUSTOMER, "fields": ["key"], "size": 1}
    company.insert(CUSTOMER, {"id": "A", "name": "A"})
    assert company.query(body, entity=None)["ia::meta"]["totalCount"] == 1
    assert company.query(body, entity=None)["ia::meta"]["totalCount"] == 1
    company.insert(CUSTOMER, {"id": "B", "name": "B"})
    assert company.query(body, entity=None)["ia::meta"]["totalCount"] == 2
