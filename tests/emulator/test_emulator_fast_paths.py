"""The emulator's fast paths give the same answers as the general ones (in process).

Pinned here: a ``filterExpression`` with ``or`` pushed whole into SQL (the pager's fallback
after a mass update) returns what the Python evaluation returns; the sparse-record projection
keeps request order, nulls and odd stored shapes; ``$in`` look-ups on ``id`` keep key order;
a batch undoes only the record that failed after writing; ``paused_gc`` restores the collector.
"""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest

from intacct_emulator import filters
from intacct_emulator.company import Company
from intacct_emulator.query_engine import QueryEngine, paused_gc

CUSTOMER = "accounts-receivable/customer"
BILL = "accounts-payable/bill"
BILL_LINE = "accounts-payable/bill-line"
TS = "audit.modifiedDateTime"


def _rows(company: Company, **body: Any) -> list[dict[str, Any]]:
    body.setdefault("object", CUSTOMER)
    body.setdefault("fields", ["key", TS])
    body.setdefault("size", 4000)
    rows: list[dict[str, Any]] = company.query(body, entity=None)["ia::result"]
    return rows


def _same_timestamp_customers(company: Company, count: int, stamp: str) -> list[str]:
    keys = []
    for index in range(count):
        ref = company.insert(
            CUSTOMER, {"id": f"C{index}", "name": f"N{index}", "audit": {"modifiedDateTime": stamp}}
        )
        keys.append(ref["key"])
    return keys


def test_expression_sql_binds_in_order_of_appearance() -> None:
    sql, params = filters.expression_sql(
        "(1 or (2 AND 3)) and 1", [("a > ?", [1]), ("b = ?", [2]), ("c IN (?, ?)", [3, 4])]
    )
    assert sql == "((a > ?) OR ((b = ?) AND (c IN (?, ?)))) AND (a > ?)"
    assert params == [1, 2, 3, 4, 1]
    with pytest.raises(filters.ExpressionError):
        filters.expression_sql("1 or 4", [("a", []), ("b", [])])


def test_or_keyset_fallback_is_pushed_down_and_matches_python(
    company: Company, monkeypatch: pytest.MonkeyPatch
) -> None:
    early = _same_timestamp_customers(company, 5, "2025-01-01T00:00:00.000Z")
    late = _same_timestamp_customers(company, 3, "2025-01-02T00:00:00.000Z")
    cursor = {"t": "2025-01-01T00:00:00.000Z", "k": early[1]}
    body: dict[str, Any] = {
        "filters": [
            {"$gt": {TS: cursor["t"]}},
            {"$eq": {TS: cursor["t"]}},
            {"$gt": {"key": cursor["k"]}},
        ],
        "filterExpression": "(1 or (2 and 3))",
        "orderBy": [{TS: "asc"}, {"key": "asc"}],
    }
    # case-insensitive comparison keeps the evaluation in Python (same semantics for these)
    in_python = _rows(company, **body, filterParameters={"caseSensitiveComparison": False})

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the OR expression should have run in SQL")

    monkeypatch.setattr(QueryEngine, "_filter_python", refuse)
    pushed = _rows(company, **body)
    assert pushed == in_python
    assert [r["key"] for r in pushed] == [*early[2:], *late]
    meta = company.query({"object": CUSTOMER, "fields": ["key"], **body, "size": 2}, entity=None)
    assert meta["ia::meta"]["totalCount"] == 6
    assert meta["ia::meta"]["next"] == 3


def test_or_expression_ignores_unnamed_filters_like_python(company: Company) -> None:
    keys = _same_timestamp_customers(company, 4, "2025-03-01T00:00:00.000Z")
    body: dict[str, Any] = {
        "filters": [
            {"$eq": {"key": keys[0]}},
            {"$eq": {"id": "C3"}},
            {"$eq": {"key": keys[1]}},
        ],
        "filterExpression": "1 or 2",
    }
    pushed = _rows(company, **body)
    in_python = _rows(company, **body, filterParameters={"caseSensitiveComparison": False})
    assert [r["key"] for r in pushed] == [keys[0], keys[3]]
    assert pushed == in_python


def test_or_with_a_python_only_filter_still_works(company: Company) -> None:
    keys = _same_timestamp_customers(company, 3, "2025-03-01T00:00:00.000Z")
    rows = _rows(
        company,
        filters=[{"$eq": {"key": keys[0]}}, {"$startsWith": {"name": "N2"}}],
        filterExpression="1 or 2",
    )
    assert [r["key"] for r in rows] == [keys[0], keys[2]]


def test_id_lookup_keeps_key_order(company: Company) -> None:
    ids = [f"ID-{n:03d}" for n in range(40)]
    for record_id in reversed(ids):  # keys ascend while ids descend
        company.insert(CUSTOMER, {"id": record_id, "name": record_id})
    wanted = ids[::3]
    rows = _rows(company, fields=["key", "id"], filters=[{"$in": {"id": wanted}}])
    assert sorted(r["id"] for r in rows) == sorted(wanted)
    assert [int(r["key"]) for r in rows] == sorted(int(r["key"]) for r in rows)
    one = _rows(company, fields=["id"], filters=[{"$eq": {"id": ids[5]}}])
    assert one == [{"id": ids[5]}]
    for direction in ("asc", "desc"):  # an explicit orderBy on key (the upsert look-up's)
        ordered = _rows(
            company,
            fields=["key", "id"],
            filters=[{"$in": {"id": wanted}}],
            orderBy=[{"key": direction}],
        )
        keys = [int(r["key"]) for r in ordered]
        assert keys == sorted(keys, reverse=direction == "desc")
        assert sorted(r["id"] for r in ordered) == sorted(wanted)


def test_id_lookup_is_served_by_the_id_index(company: Company) -> None:
    """The upsert look-up (`$in` on id, ordered by key) must not walk the key index."""
    company.insert(CUSTOMER, {"id": "ONE", "name": "one"})
    plans: list[str] = []
    conn = company.store._conn
    company.store._conn = _PlanSpy(conn, plans)
    try:
        _rows(
            company,
            fields=["key", "id"],
            filters=[{"$in": {"id": ["ONE"]}}],
            orderBy=[{"key": "asc"}],
        )
    finally:
        company.store._conn = conn
    assert any("records_id" in plan for plan in plans), plans


class _PlanSpy:
    """Wraps the SQLite connection and records the plan of each SELECT on records."""

    def __init__(self, conn: Any, plans: list[str]) -> None:
        self._conn, self._plans = conn, plans

    def execute(self, sql: str, args: Any = ()) -> Any:
        if sql.startswith("SELECT") and "FROM records" in sql and "count(" not in sql.lower():
            detail = self._conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
            self._plans.append(" ".join(str(row[-1]) for row in detail))
        return self._conn.execute(sql, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def test_projection_keeps_order_nulls_and_odd_stored_shapes(company: Company) -> None:
    company.insert(
        CUSTOMER,
        {
            "id": "ODD",
            "name": "Odd",
            "contacts": "not an object",
            "parent": {"id": "P1", "unknownMember": 1},
            "notInSchema": {"x": 1},
        },
    )
    fields = [
        "name",
        "contacts.default.mailingAddress.city",
        "parent.id",
        "id",
        "name",
        "parent.key",
        "contacts.default.firstName",
    ]
    (row,) = _rows(company, fields=fields)
    assert list(row) == [
        "name",
        "contacts.default.mailingAddress.city",
        "parent.id",
        "id",
        "parent.key",
        "contacts.default.firstName",
    ]
    assert row == {
        "name": "Odd",
        "contacts.default.mailingAddress.city": None,
        "parent.id": "P1",
        "id": "ODD",
        "parent.key": None,
        "contacts.default.firstName": None,
    }


def _bill_body(amount: str, *, bad_line: bool = False) -> dict[str, Any]:
    line: dict[str, Any] = {"txnAmount": amount, "glAccount": {"id": "6000"}}
    if bad_line:
        line["ia::operation"] = "delete"  # refused only after the owner was written
    return {
        "vendor": {"id": "V1"},
        "createdDate": "2026-01-02",
        "dueDate": "2026-02-01",
        "currency": {"txnCurrency": "USD"},
        "lines": [{"txnAmount": "1.00", "glAccount": {"id": "6000"}}, line],
    }


def test_batch_undoes_only_the_record_that_failed_after_writing(company: Company) -> None:
    status, body = company.create(
        BILL,
        [_bill_body("2.00"), _bill_body("3.00", bad_line=True), _bill_body("4.00")],
        entity=None,
        transaction=False,
    )
    assert status == 207
    results = body["ia::result"]
    assert [r["ia::status"] for r in results] == [201, 400, 201]
    assert company.store.count(BILL, [], []) == 2
    assert company.store.count(BILL_LINE, [], []) == 4
    amounts = sorted(
        line["txnAmount"]
        for result in (results[0], results[2])
        for line in company.record(BILL, result["key"])["lines"]
    )
    assert amounts == ["1.00", "1.00", "2.00", "4.00"]


def test_batch_without_lines_partial_success(company: Company) -> None:
    status, body = company.create(
        CUSTOMER,
        [{"id": "A", "name": "A"}, {"id": "A", "name": "again"}, {"id": "B", "name": "B"}],
        entity=None,
        transaction=False,
    )
    assert status == 207
    assert [r["ia::status"] for r in body["ia::result"]] == [201, 409, 201]
    rows = _rows(company, fields=["key", "id"], orderBy=[{"key": "asc"}])
    assert [r["id"] for r in rows] == ["A", "B"]
    assert int(rows[1]["key"]) == int(rows[0]["key"]) + 1  # the failed record used no key


def test_paused_gc_restores_the_collector() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        raise RuntimeError("boom")
    assert gc.isenabled()


@pytest.mark.parametrize("reader", ["page", "flat_page"])
def test_deep_offset_pages_read_keys_first_and_keep_order(company: Company, reader: str) -> None:
    """Past the first page the store reads page keys, then their rows, in order."""
    company.seed_object(CUSTOMER, 250, 3)
    keys = [int(r["key"]) for r in _rows(company, fields=["key"], orderBy=[{"key": "asc"}])]
    read = getattr(company.store, reader)
    for offset in (0, 120):  # one statement near the start, keys-then-rows deeper
        rows = read(CUSTOMER, [], [], order="key", limit=40, offset=offset)
        assert [int(json.loads(row)["key"]) for row in rows] == keys[offset : offset + 40]
