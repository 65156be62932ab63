"""Unit tests of the emulator's data layer (``intacct_emulator.company.Company``), in process.

The over-HTTP behaviour is covered in test_emulator_fidelity.py / test_emulator_schemathesis.py;
here each behaviour is pinned directly and fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from intacct_emulator.company import Company, EmulatorError

CUSTOMER = "accounts-receivable/customer"
VENDOR = "accounts-payable/vendor"
BILL = "accounts-payable/bill"
BILL_LINE = "accounts-payable/bill-line"
JOURNAL_ENTRY = "general-ledger/journal-entry"
JE_LINE = "general-ledger/journal-entry-line"
INVOICE = "accounts-receivable/invoice"


@pytest.fixture(scope="module")
def seeded(registry: Any) -> Company:
    company = Company(registry)
    company.seed(30, 42)
    return company


def _error(exc: pytest.ExceptionInfo[EmulatorError]) -> dict[str, Any]:
    error: dict[str, Any] = exc.value.body["ia::result"]["ia::error"]
    return error


def _customers(company: Company, *names: str, entity: str | None = None) -> list[str]:
    keys = []
    for name in names:
        status, body = company.create(CUSTOMER, {"name": name}, entity=entity, transaction=False)
        assert status == 201
        keys.append(body["ia::result"]["key"])
    return keys


def _q(company: Company, entity: str | None = None, **body: Any) -> dict[str, Any]:
    body.setdefault("object", CUSTOMER)
    body.setdefault("fields", ["key", "name"])
    return company.query(body, entity=entity)


# -- query: operators ------------------------------------------------------------------------


@pytest.fixture
def people(company: Company) -> Company:
    for name, limit, hold in [
        ("Alpha Retail", 100, False),
        ("beta alarms", 2500, True),
        ("Gamma Retail", None, False),
        ("Delta Foods", 50, True),
    ]:
        company.create(
            CUSTOMER,
            {"name": name, "creditLimit": limit, "isOnHold": hold},
            entity=None,
            transaction=False,
        )
    return company


@pytest.mark.parametrize(
    ("operator", "field", "value", "expected"),
    [
        ("$eq", "name", "Alpha Retail", ["Alpha Retail"]),
        ("$eq", "creditLimit", None, ["Gamma Retail"]),
        ("$ne", "creditLimit", None, ["Alpha Retail", "beta alarms", "Delta Foods"]),
        ("$ne", "name", "Alpha Retail", ["beta alarms", "Gamma Retail", "Delta Foods"]),
        ("$lt", "creditLimit", 100, ["Delta Foods"]),
        ("$lte", "creditLimit", 100, ["Alpha Retail", "Delta Foods"]),
        ("$gt", "creditLimit", 100, ["beta alarms"]),
        ("$gte", "creditLimit", "100", ["Alpha Retail", "beta alarms"]),
        ("$in", "key", ["1", "3"], ["Alpha Retail", "Gamma Retail"]),
        ("$notIn", "key", ["1", "3"], ["beta alarms", "Delta Foods"]),
        ("$between", "creditLimit", [60, 3000], ["Alpha Retail", "beta alarms"]),
        ("$notBetween", "creditLimit", [60, 3000], ["Delta Foods"]),
        ("$contains", "name", "Retail", ["Alpha Retail", "Gamma Retail"]),
        ("$notContains", "name", "Retail", ["beta alarms", "Delta Foods"]),
        ("$startsWith", "name", "Gam", ["Gamma Retail"]),
        ("$notStartsWith", "name", "Gam", ["Alpha Retail", "beta alarms", "Delta Foods"]),
        ("$endsWith", "name", "Foods", ["Delta Foods"]),
        ("$notEndsWith", "name", "Foods", ["Alpha Retail", "beta alarms", "Gamma Retail"]),
        ("$eq", "isOnHold", True, ["beta alarms", "Delta Foods"]),
        ("$gt", "key", "2", ["Gamma Retail", "Delta Foods"]),
    ],
)
def test_filter_operators(
    people: Company, operator: str, field: str, value: Any, expected: list[str]
) -> None:
    body = _q(people, filters=[{operator: {field: value}}])
    assert [r["name"] for r in body["ia::result"]] == expected
    assert body["ia::meta"]["totalCount"] == len(expected)


def test_has_operator_on_array_of_strings(company: Company) -> None:
    company.insert(CUSTOMER, {"name": "tagged", "tags": ["vip", "east"]})
    company.insert(CUSTOMER, {"name": "plain", "tags": ["west"]})
    # ``tags`` is not in the spec, so query the predicate directly through the filter module
    from intacct_emulator.filters import predicate

    test = predicate("$has", "vip", lambda v: v)
    assert test(["vip", "east"]) is True
    assert test(["west"]) is False
    assert test(None) is False


def test_case_insensitive_comparison(people: Company) -> None:
    body = _q(
        people,
        filters=[{"$startsWith": {"name": "BETA"}}],
        filterParameters={"caseSensitiveComparison": False},
    )
    assert [r["name"] for r in body["ia::result"]] == ["beta alarms"]
    sensitive = _q(people, filters=[{"$startsWith": {"name": "BETA"}}])
    assert sensitive["ia::result"] == []


def test_filter_expression(people: Company) -> None:
    filters = [
        {"$contains": {"name": "Retail"}},
        {"$eq": {"isOnHold": True}},
        {"$eq": {"name": "Delta Foods"}},
    ]
    either = _q(people, filters=filters, filterExpression="1 or 2")
    assert [r["name"] for r in either["ia::result"]] == [
        "Alpha Retail",
        "beta alarms",
        "Gamma Retail",
        "Delta Foods",
    ]
    grouped = _q(people, filters=filters, filterExpression="(1 and 2) or 3")
    assert [r["name"] for r in grouped["ia::result"]] == ["Delta Foods"]
    default_and = _q(people, filters=filters[:2])
    assert default_and["ia::result"] == []
    with pytest.raises(EmulatorError) as exc:
        _q(people, filters=filters, filterExpression="1 and 4")
    assert exc.value.status == 400


def test_order_by_numeric_keys_and_amounts(company: Company) -> None:
    for index in range(12):
        company.create(
            CUSTOMER,
            {"name": f"n{index % 3}", "creditLimit": (index * 7) % 10 * 100},
            entity=None,
            transaction=False,
        )
    desc = _q(company, fields=["key"], orderBy=[{"key": "desc"}])
    assert [int(r["key"]) for r in desc["ia::result"]] == list(range(12, 0, -1))
    by_limit = _q(
        company,
        fields=["key", "creditLimit"],
        orderBy=[{"creditLimit": "asc"}, {"key": "desc"}],
    )
    pairs = [(r["creditLimit"], int(r["key"])) for r in by_limit["ia::result"]]
    assert pairs == sorted(pairs, key=lambda p: (p[0], -p[1]))
    stable = _q(company, fields=["key", "name"], orderBy=[{"name": "asc"}])
    names = [r["name"] for r in stable["ia::result"]]
    assert names == sorted(names)
    # within equal names the order is the key order (stable sort)
    first_group = [int(r["key"]) for r in stable["ia::result"] if r["name"] == "n0"]
    assert first_group == sorted(first_group)


def test_paging_meta_like_the_recordings(company: Company) -> None:
    _customers(company, *[f"c{i}" for i in range(128)])
    first = _q(company, size=100)
    assert first["ia::meta"] == {
        "totalCount": 128,
        "start": 1,
        "pageSize": 100,
        "next": 101,
        "previous": None,
    }
    second = _q(company, size=100, start=101)
    assert second["ia::meta"] == {
        "totalCount": 128,
        "start": 101,
        "pageSize": 100,
        "next": None,
        "previous": 1,
    }
    assert len(second["ia::result"]) == 28
    default = _q(company)
    assert default["ia::meta"]["pageSize"] == 100
    with pytest.raises(EmulatorError) as exc:
        _q(company, size=4001)
    assert exc.value.status == 400
    assert "4000" in _error(exc)["message"]


def test_dotted_fields_are_literal_keys(seeded: Company) -> None:
    body = seeded.query(
        {
            "object": BILL_LINE,
            "fields": ["key", "bill.id", "bill.audit.modifiedDateTime", "glAccount.id"],
            "size": 5,
        },
        entity=None,
    )
    row = body["ia::result"][0]
    assert set(row) == {"key", "bill.id", "bill.audit.modifiedDateTime", "glAccount.id"}
    assert row["bill.id"] is not None
    assert row["bill.audit.modifiedDateTime"].endswith("Z")


def test_audit_modified_filter_and_order_uses_timestamps(company: Company) -> None:
    keys = _customers(company, "a", "b", "c")
    middle = company.record(CUSTOMER, keys[1])["audit"]["modifiedDateTime"]
    body = _q(
        company,
        fields=["key", "audit.modifiedDateTime"],
        filters=[{"$gte": {"audit.modifiedDateTime": middle}}],
        orderBy=[{"audit.modifiedDateTime": "asc"}],
    )
    assert [r["key"] for r in body["ia::result"]] == keys[1:]
    stamps = [company.record(CUSTOMER, k)["audit"]["modifiedDateTime"] for k in keys]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 3


def test_rest_1106_refused_fields(company: Company) -> None:
    with pytest.raises(EmulatorError) as exc:
        company.query({"object": INVOICE, "fields": ["key", "action"]}, entity=None)
    error = _error(exc)
    assert exc.value.status == 400
    assert error["errorId"] == "REST-1106"
    assert error["additionalInfo"]["placeholders"]["FIELD"] == "action"
    assert error["message"] == (
        "The action field in accounts-receivable/invoice object cannot be used in query "
        "in version 1"
    )
    company.refused_query_fields[CUSTOMER] = {"taxId"}
    with pytest.raises(EmulatorError) as exc:
        _q(company, fields=["key", "taxId"])
    assert _error(exc)["additionalInfo"]["placeholders"]["FIELD"] == "taxId"
    with pytest.raises(EmulatorError) as exc:  # lists cannot be queried
        _q(company, fields=["contactList"])
    assert _error(exc)["errorId"] == "REST-1106"


def test_unknown_field_and_object_and_wildcard(company: Company) -> None:
    with pytest.raises(EmulatorError) as exc:
        _q(company, fields=["key", "nope"])
    assert exc.value.status == 400
    assert "nope" in _error(exc)["message"]
    with pytest.raises(EmulatorError) as exc:
        company.query({"object": "x/y", "fields": ["key"]}, entity=None)
    assert exc.value.status == 400
    with pytest.raises(EmulatorError):
        _q(company, fields=["*"])
    with pytest.raises(EmulatorError) as exc:
        company.query({"fields": ["key"]}, entity=None)
    assert _error(exc)["details"][0]["target"] == "/object"


# -- entities --------------------------------------------------------------------------------


def test_entity_scoping(company: Company) -> None:
    _customers(company, "shared")
    _customers(company, "east only", entity="E100")
    _customers(company, "west only", entity="E200")

    def names(entity: str | None, **params: Any) -> list[str]:
        body = _q(company, entity=entity, filterParameters=params or None)
        return [r["name"] for r in body["ia::result"]]

    assert names(None) == ["shared"]
    assert names(None, includePrivate=True) == ["shared", "east only", "west only"]
    assert names("E100") == ["shared", "east only"]
    assert names("E200") == ["shared", "west only"]
    with pytest.raises(EmulatorError) as exc:
        company.get(CUSTOMER, ["3"], entity="E100")
    assert exc.value.status == 404
    assert company.get(CUSTOMER, ["3"], entity="E200")["ia::result"]["name"] == "west only"


# -- CRUD ------------------------------------------------------------------------------------


def test_create_get_update_delete(company: Company) -> None:
    status, body = company.create(
        CUSTOMER, {"id": "C-1", "name": "Acme", "creditLimit": "1000.50"}, entity=None,
        transaction=False,
    )  # fmt: skip
    assert status == 201
    ref = body["ia::result"]
    assert ref == {"key": "1", "id": "C-1", "href": "/objects/accounts-receivable/customer/1"}
    record = company.get(CUSTOMER, ["1"], entity=None)["ia::result"]
    assert record["name"] == "Acme"
    assert record["taxId"] is None  # unset members come back null, as Intacct does
    assert record["audit"]["createdDateTime"].endswith("Z")
    created = record["audit"]["modifiedDateTime"]

    status, body = company.update(CUSTOMER, "1", {"taxId": "12-3"}, entity=None, transaction=False)
    assert status == 200
    updated = company.get(CUSTOMER, ["1"], entity=None)["ia::result"]
    assert updated["name"] == "Acme"
    assert updated["taxId"] == "12-3"
    assert updated["audit"]["modifiedDateTime"] > created

    listing = company.list(CUSTOMER, entity=None, start=1, size=100)
    assert listing["ia::result"] == [ref]
    assert listing["ia::meta"]["totalCount"] == 1

    assert company.delete(CUSTOMER, ["1"], entity=None, transaction=False) == (204, None)
    with pytest.raises(EmulatorError) as exc:
        company.get(CUSTOMER, ["1"], entity=None)
    assert exc.value.status == 404


def test_get_many_keys(company: Company) -> None:
    _customers(company, "a", "b")
    body = company.get(CUSTOMER, ["1", "2"], entity=None)
    assert [r["name"] for r in body["ia::result"]] == ["a", "b"]
    partial = company.get(CUSTOMER, ["1", "9"], entity=None)
    assert partial["ia::result"][1]["ia::error"]["code"] == "notFound"
    assert partial["ia::meta"] == {"totalCount": 2, "totalSuccess": 1, "totalError": 1}


def test_duplicate_id_conflicts(company: Company) -> None:
    company.create(VENDOR, {"id": "V1", "name": "One"}, entity=None, transaction=False)
    with pytest.raises(EmulatorError) as exc:
        company.create(VENDOR, {"id": "V1", "name": "Two"}, entity=None, transaction=False)
    assert exc.value.status == 409
    assert _error(exc)["details"][0]["target"] == "/id"


def test_batch_partial_success_is_207_in_order(company: Company) -> None:
    status, body = company.create(
        VENDOR,
        [
            {"id": "V1", "name": "ok 1"},
            {"id": "V2"},
            {"id": "V3", "name": "ok 3"},
            {"id": "V4", "name": "bad", "status": "sleeping"},
        ],
        entity=None,
        transaction=False,
    )
    assert status == 207
    results = body["ia::result"]
    assert [r.get("id") for r in results] == ["V1", None, "V3", None]
    assert results[1]["ia::error"]["details"][0]["target"] == "/name"
    assert results[3]["ia::error"]["details"][0]["target"] == "/status"
    assert body["ia::meta"] == {"totalCount": 4, "totalSuccess": 2, "totalError": 2}
    assert company.store.count(VENDOR, [], []) == 2


def test_batch_all_ok_and_delete_partial(company: Company) -> None:
    status, body = company.create(
        VENDOR, [{"id": f"V{i}", "name": f"v{i}"} for i in range(3)], entity=None,
        transaction=False,
    )  # fmt: skip
    assert status == 201
    assert [r["key"] for r in body["ia::result"]] == ["1", "2", "3"]
    status, body = company.update(
        VENDOR, None, [{"key": "1", "notes": "x"}, {"key": "99", "notes": "y"}], entity=None,
        transaction=False,
    )  # fmt: skip
    assert status == 207
    assert body["ia::result"][1]["ia::error"]["code"] == "notFound"
    status, deleted = company.delete(VENDOR, ["2", "77", "3"], entity=None, transaction=False)
    assert status == 207
    assert deleted is not None
    assert deleted["ia::result"][0] == {"ia::status": 204}  # successes carry no key
    assert "ia::error" in deleted["ia::result"][1]
    with pytest.raises(EmulatorError) as exc:
        company.create(VENDOR, [{"id": "x", "name": "x"}] * 501, entity=None, transaction=False)
    assert exc.value.status == 400


def test_transaction_is_all_or_nothing(company: Company) -> None:
    status, body = company.create(
        VENDOR,
        [{"id": "V1", "name": "fine"}, {"id": "V2", "bogus": 1}],
        entity=None,
        transaction=True,
    )
    assert status == 400
    assert company.store.count(VENDOR, [], []) == 0
    codes = [r["ia::error"]["code"] for r in body["ia::result"]]
    assert codes == ["unprocessed", "invalidRequest"]
    assert body["ia::result"][1]["ia::error"]["details"][0]["target"] == "/bogus"
    status, body = company.create(
        VENDOR, [{"id": "V1", "name": "a"}, {"id": "V2", "name": "b"}], entity=None,
        transaction=True,
    )  # fmt: skip
    assert status == 201
    assert company.store.count(VENDOR, [], []) == 2


@pytest.mark.parametrize(
    ("body", "target"),
    [
        ({"name": "x", "nonsense": 1}, "/nonsense"),
        ({"name": 5}, "/name"),
        ({"name": "x", "status": "nope"}, "/status"),
        ({"name": "x", "isOnHold": "yes"}, "/isOnHold"),
        ({"name": "x", "creditLimit": "lots"}, "/creditLimit"),
        ({"taxId": "1"}, "/name"),
        ({"name": "x", "parent": {"id": 3}}, "/parent/id"),
    ],
)
def test_validation_errors_name_the_field(company: Company, body: Any, target: str) -> None:
    with pytest.raises(EmulatorError) as exc:
        company.create(CUSTOMER, body, entity=None, transaction=False)
    assert exc.value.status == 400
    error = _error(exc)
    assert error["errorId"] == "REST-1064"
    assert [d["target"] for d in error["details"]] == [target]


def test_read_only_members_are_ignored(company: Company) -> None:
    _status, body = company.create(
        CUSTOMER,
        {"name": "x", "key": "999", "href": "/elsewhere", "totalDue": "5.00"},
        entity=None,
        transaction=False,
    )
    assert body["ia::result"]["key"] == "1"
    record = company.record(CUSTOMER, "1")
    assert record["totalDue"] is None
    assert record["href"].endswith("/customer/1")


def test_entity_of_created_records(company: Company) -> None:
    company.seed(1, 1, objects=["company-config/entity"])
    _customers(company, "private", entity="E100")
    record = company.record(CUSTOMER, "1")
    assert record["entity"]["id"] == "E100"
    assert record["entity"]["name"] == "United States"


# -- owned objects ---------------------------------------------------------------------------


def _bill(company: Company, lines: list[dict[str, Any]]) -> str:
    status, body = company.create(
        BILL,
        {
            "vendor": {"id": "V1"},
            "createdDate": "2026-01-02",
            "dueDate": "2026-02-01",
            "currency": {"txnCurrency": "USD"},
            "lines": lines,
        },
        entity=None,
        transaction=False,
    )
    assert status == 201
    key: str = body["ia::result"]["key"]
    return key


def test_lines_written_through_owner(company: Company) -> None:
    line = {"txnAmount": "10.00", "glAccount": {"id": "6000"}}
    key = _bill(company, [line, {**line, "txnAmount": "20.00"}])
    bill = company.record(BILL, key)
    assert [ln["txnAmount"] for ln in bill["lines"]] == ["10.00", "20.00"]
    first, second = (ln["key"] for ln in bill["lines"])
    assert bill["lines"][0]["bill"]["key"] == key
    assert company.record(BILL_LINE, first)["bill"]["href"] == f"/objects/{BILL}/{key}"

    company.update(
        BILL,
        key,
        {
            "lines": [
                {"key": first, "txnAmount": "11.00"},
                {"key": second, "ia::operation": "delete"},
                {"txnAmount": "30.00", "glAccount": {"id": "6000"}},
            ]
        },
        entity=None,
        transaction=False,
    )
    bill = company.record(BILL, key)
    assert [ln["txnAmount"] for ln in bill["lines"]] == ["11.00", "30.00"]
    assert company.store.get(BILL_LINE, int(second)) is None

    company.delete(BILL, [key], entity=None, transaction=False)
    assert company.store.count(BILL_LINE, [], []) == 0


def test_line_validation_names_line_member(company: Company) -> None:
    with pytest.raises(EmulatorError) as exc:
        _bill(company, [{"glAccount": {"id": "6000"}}])
    assert _error(exc)["details"][0]["target"] == "/lines/0/txnAmount"
    assert company.store.count(BILL, [], []) == 0


def test_owner_only_lines_refuse_direct_writes(company: Company) -> None:
    with pytest.raises(EmulatorError) as exc:
        company.create(JE_LINE, {"txnAmount": "1.00"}, entity=None, transaction=False)
    assert exc.value.status == 405
    assert JOURNAL_ENTRY in _error(exc)["message"]
    status, body = company.create(
        JOURNAL_ENTRY,
        {
            "glJournal": {"id": "GJ"},
            "postingDate": "2026-01-31",
            "description": "accrual",
            "lines": [
                {"txnType": "debit", "txnAmount": "5.00", "glAccount": {"id": "6000"}},
                {"txnType": "credit", "txnAmount": "5.00", "glAccount": {"id": "2000"}},
            ],
        },
        entity=None,
        transaction=False,
    )
    assert status == 201
    entry = company.record(JOURNAL_ENTRY, body["ia::result"]["key"])
    assert [ln["txnType"] for ln in entry["lines"]] == ["debit", "credit"]
    assert entry["lines"][0]["journalEntry"]["key"] == body["ia::result"]["key"]


def test_direct_line_create_needs_existing_owner(company: Company) -> None:
    key = _bill(company, [{"txnAmount": "1.00", "glAccount": {"id": "6000"}}])
    status, _ = company.create(
        BILL_LINE,
        {"bill": {"key": key}, "txnAmount": "2.00", "glAccount": {"id": "6000"}},
        entity=None,
        transaction=False,
    )
    assert status == 201
    assert len(company.record(BILL, key)["lines"]) == 2
    with pytest.raises(EmulatorError):
        company.create(
            BILL_LINE,
            {"bill": {"key": "404"}, "txnAmount": "2.00", "glAccount": {"id": "6000"}},
            entity=None,
            transaction=False,
        )


# -- helpers, seeding, persistence -----------------------------------------------------------


def test_touch_bumps_modified(company: Company) -> None:
    (key,) = _customers(company, "a")
    before = company.record(CUSTOMER, key)["audit"]["modifiedDateTime"]
    company.touch(CUSTOMER, key, name="renamed")
    after = company.record(CUSTOMER, key)
    assert after["name"] == "renamed"
    assert after["audit"]["modifiedDateTime"] > before
    company.touch(CUSTOMER, key, audit={"modifiedDateTime": "2030-01-01T00:00:00Z"})
    body = _q(
        company,
        fields=["key"],
        filters=[{"$gte": {"audit.modifiedDateTime": "2030-01-01T00:00:00Z"}}],
    )
    assert body["ia::meta"]["totalCount"] == 1


def test_seeding_is_deterministic_and_plausible(registry: Any, seeded: Company) -> None:
    again = Company(registry)
    again.seed(30, 42)
    other = Company(registry)
    other.seed(30, 43)
    for name in (CUSTOMER, BILL, BILL_LINE, "general-ledger/account", JE_LINE):
        mine = seeded.store.select(name, [], [], columns="key, entity, data")
        assert mine == again.store.select(name, [], [], columns="key, entity, data")
    assert seeded.store.select(CUSTOMER, [], [], columns="data") != other.store.select(
        CUSTOMER, [], [], columns="data"
    )
    assert seeded.store.count("company-config/entity", [], []) == 3
    private = seeded.store.count(CUSTOMER, ["entity IS NOT NULL"], [])
    assert 0 < private < 30
    rows = seeded.query(
        {
            "object": BILL,
            "fields": ["key", "vendor.id", "audit.modifiedDateTime", "dueDate", "totalTxnAmount"],
            "size": 30,
            "filterParameters": {"includePrivate": True},
        },
        entity=None,
    )["ia::result"]
    stamps = [r["audit.modifiedDateTime"] for r in rows]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)
    vendor_ids = {
        r["id"]
        for r in seeded.query(
            {
                "object": VENDOR,
                "fields": ["id"],
                "size": 100,
                "filterParameters": {"includePrivate": True},
            },
            entity=None,
        )["ia::result"]
    }
    assert all(r["vendor.id"] in vendor_ids for r in rows)
    assert all(len(r["dueDate"]) == 10 for r in rows)
    assert all(r["totalTxnAmount"].count(".") == 1 for r in rows)
    assert len(rows[0]["totalTxnAmount"].split(".")[1]) == 2


def test_persistence_across_reopen(registry: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "company.db")
    first = Company(registry, db=path)
    first.seed(5, 1, objects=[CUSTOMER])
    _customers(first, "written")
    stamp = first.record(CUSTOMER, "6")["audit"]["modifiedDateTime"]
    first.close()
    second = Company(registry, db=path)
    assert second.record(CUSTOMER, "6")["name"] == "written"
    _status, body = second.create(CUSTOMER, {"name": "next"}, entity=None, transaction=False)
    assert body["ia::result"]["key"] == "7"  # key counter survives the restart
    assert second.record(CUSTOMER, "7")["audit"]["modifiedDateTime"] > stamp
    second.reset()
    assert second.store.count(CUSTOMER, [], []) == 0
    second.close()


def test_model_service_shape(company: Company) -> None:
    model = company.model({"name": CUSTOMER})["ia::result"]
    assert model["apiObject"] == f"objects/{CUSTOMER}"
    assert model["type"] == "rootObject"
    assert model["fields"]["key"]["readOnly"] is True
    assert model["fields"]["status"]["nullable"] is False
    assert model["groups"]["audit"]["refs"]["createdByUser"]["apiObject"] == "company-config/user"
    assert model["lists"]["contactList"]["apiObject"] == "accounts-receivable/customer-contact"
    line = company.model({"name": BILL_LINE})["ia::result"]
    assert line["type"] == "ownedObject"
    short = company.model({"type": "ownedObject"})["ia::result"]
    assert short
    assert all(r["type"] == "ownedObject" for r in short)
    with pytest.raises(EmulatorError) as exc:
        company.model({"name": "nope/nothing"})
    assert exc.value.status == 404
