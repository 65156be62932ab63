"""GL balance streams (issue 16) against the emulator's reports service, over loopback HTTP.

The central check: for each period, the trial balance the tap reads from the reports service
equals what the journal-entry-line stream gives when summed by account over the same periods
(to the cent), debits equal credits, and a rerun after a late entry in the open period changes
exactly the rows it touches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from intacct_api.balance_reports import (
    BALANCE_REPORTS,
    ReportFormatError,
    parse_balances,
    period_range,
    request_body,
    shift_period,
)
from intacct_api.decimals import DECIMAL_FORMAT
from intacct_api.reports import PollPolicy, ReportRunner, ReportTimeoutError
from intacct_api.spec import default_registry
from intacct_emulator.reports_service import NOT_POSTED, ReportsService
from intacct_emulator.testing import EmulatorServer
from tap_intacct import report_streams
from tap_intacct.report_settings import BalanceOptions
from tap_intacct.tap import TapIntacct
from tests.support.connection import demo_connection
from tests.support.tap_runs import sync_until_failure

P1, P2, P3 = "2026-01", "2026-02", "2026-03"
TB = "general_ledger__trial_balance"
AB = "general_ledger__account_balance"
ABD = "general_ledger__account_balance_by_dimension"
Line = tuple[str, str, str, dict[str, Any] | None]  # (txnType, amount, account, dimensions)


# -- fixtures and helpers ---------------------------------------------------------------------


def post_entry(
    server: EmulatorServer, day: str, lines: list[Line], *, state: str | None = None
) -> None:
    body: dict[str, Any] = {
        "glJournal": {"id": "GJ"},
        "postingDate": day,
        "description": f"entry of {day}",
        "lines": [
            {"txnType": kind, "txnAmount": amount, "glAccount": {"id": account}}
            | ({"dimensions": dims} if dims else {})
            for kind, amount, account, dims in lines
        ],
    }
    if state:
        body["state"] = state
    answer = server.http.post(
        server.base_url + "/objects/general-ledger/journal-entry",
        json=body,
        headers=server.auth_headers(),
    )
    assert answer.status_code == 201, answer.text


def pair(day: str, amount: str, debit: str, credit: str, server: EmulatorServer, **kw: Any) -> None:
    post_entry(
        server, day, [("debit", amount, debit, None), ("credit", amount, credit, None)], **kw
    )


def loc(entity: str) -> dict[str, Any]:
    return {"location": {"id": entity}}


def dept(name: str) -> dict[str, Any]:
    return {"department": {"id": name}}


def seed_ledger(server: EmulatorServer) -> None:
    """Entries before, inside and after P1..P3, with cents, a draft, dimensions, locations."""
    pair("2025-12-20", "1000.00", "1000", "3000", server)  # opening balances only
    post_entry(
        server,
        "2026-01-10",
        [("debit", "250.10", "6000", loc("E100")), ("credit", "250.10", "1000", loc("E100"))],
    )
    post_entry(
        server,
        "2026-01-31",
        [("debit", "1234.56", "1100", loc("E200")), ("credit", "1234.56", "4000", loc("E200"))],
    )
    pair("2026-02-01", "99.99", "6000", "2000", server)
    pair("2026-02-14", "500.00", "6000", "1000", server, state="draft")  # never counts
    post_entry(
        server,
        "2026-03-31",
        [("debit", "300.00", "1000", dept("D1")), ("credit", "300.00", "4000", dept("D2"))],
    )
    pair("2026-04-02", "7.00", "6000", "1000", server)  # after the periods read


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as emulator:
        seed_ledger(emulator)
        switches = reports_of(emulator).switches
        switches.pending_polls = 2  # every report is "pending" twice before it completes
        switches.retry_after = 0
        yield emulator


def reports_of(server: EmulatorServer) -> ReportsService:
    service: ReportsService = server.app.state.reports
    return service


def config(server: EmulatorServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        **demo_connection(server.base_url, tmp_path),
        "objects": ["general-ledger/journal-entry"],
        "report_poll_interval_seconds": 0.01,
        "catalog_cache": False,
        **extra,
    }


def records(messages: list[dict], stream: str) -> list[dict[str, Any]]:
    return [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == stream]


def bookmarks(messages: list[dict], stream: str) -> dict[str, Any]:
    state = [m for m in messages if m["type"] == "STATE"][-1]["value"]
    found: dict[str, Any] = state["bookmarks"][stream]
    return found


def balances(rows: list[dict[str, Any]], *keys: str) -> dict[tuple, tuple[Decimal, ...]]:
    amounts = ("opening_balance", "debit", "credit", "closing_balance")
    return {tuple(r[k] for k in keys): tuple(Decimal(r[a]) for a in amounts) for r in rows}


def from_lines(
    entries: list[dict], lines: list[dict], period: str, by: tuple[str, ...] = ()
) -> dict[tuple, tuple[Decimal, ...]]:
    """Opening/debit/credit/closing per account (and dimensions) from journal-line records."""
    headers = {e["key"]: e for e in entries}
    start = period + "-01"
    end = shift_period(period, 1) + "-01"
    sums: dict[tuple, list[Decimal]] = defaultdict(lambda: [Decimal(0)] * 3)
    for line in lines:
        entry = headers[line["journalEntry"]["key"]]
        day = (line.get("entryDate") or entry["postingDate"])[:10]
        if (line.get("state") or entry.get("state")) in NOT_POSTED or day >= end:
            continue
        dims = line.get("dimensions") or {}
        group = (line["glAccount"]["id"], *(((dims.get(d) or {}).get("id") or "") for d in by))
        amount = Decimal(line["txnAmount"])
        debit = line["txnType"] == "debit"
        if day < start:
            sums[group][0] += amount if debit else -amount
        else:
            sums[group][1 if debit else 2] += amount
    return {group: (o, d, c, o + d - c) for group, (o, d, c) in sums.items() if o or d or c}


# -- the acceptance checks --------------------------------------------------------------------


def test_trial_balance_equals_journal_lines_by_account_per_period(
    server: EmulatorServer, tmp_path: Path
) -> None:
    cfg = config(
        server,
        tmp_path,
        objects=["general-ledger/journal-entry", "general-ledger/journal-entry-line"],
        balance_reports=["trial_balance", "account_balance"],
        balance_periods=[P1, P2, P3],
    )
    messages, failure = sync_until_failure(cfg)
    assert failure is None
    entries = records(messages, "general_ledger__journal_entry")
    lines = records(messages, "general_ledger__journal_entry_line")
    trial = records(messages, TB)
    assert lines
    assert {r["period"] for r in trial} == {P1, P2, P3}
    for period in (P1, P2, P3):
        rows = [r for r in trial if r["period"] == period]
        assert balances(rows, "account_id") == from_lines(entries, lines, period)
        assert sum(Decimal(r["debit"]) for r in rows) == sum(Decimal(r["credit"]) for r in rows)
        assert sum(Decimal(r["closing_balance"]) for r in rows) == 0
    march = {r["account_id"]: r for r in trial if r["period"] == P3}
    assert march["1000"]["opening_balance"] == "749.90"  # 1000.00 - 250.10, the draft ignored
    assert march["1000"]["closing_balance"] == "1049.90"
    # The account balance report reads the same ledger: same rows, same amounts.
    account = records(messages, AB)
    assert balances(account, "period", "account_id") == balances(trial, "period", "account_id")
    # Deterministic keys: one row per (period, book, entity, account, currency).
    keys = [(r["period"], r["reporting_book"], r["entity"], r["account_id"], r["currency"])
            for r in trial]  # fmt: skip
    assert len(keys) == len(set(keys))
    assert {r["reporting_book"] for r in trial} == {"ACCRUAL"}
    assert {r["currency"] for r in trial} == {"USD"}
    # Submit, then status until completed (2 pending + 1), then download: per report.
    counts = server.requests()
    submitted = sum(v for k, v in counts.items() if k.startswith("POST /services/reports/"))
    assert submitted == 6
    assert counts["GET /services/reports/status"] == 6 * 3
    assert counts["GET /services/reports/download"] == 6


def test_rerun_after_a_late_entry_changes_exactly_the_affected_rows(
    server: EmulatorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_streams, "current_period", lambda: P3)  # March is the open period
    cfg = config(
        server,
        tmp_path,
        balance_reports=["trial_balance"],
        balance_start_period=P1,
        balance_reread_periods=1,
        start_date="2025-06-01T00:00:00Z",  # the query streams' setting: no period, ignored here
    )
    first, failure = sync_until_failure(cfg)
    assert failure is None
    state = [m for m in first if m["type"] == "STATE"][-1]["value"]
    assert bookmarks(first, TB)["replication_key_value"] == P3
    before = records(first, TB)
    assert {r["period"] for r in before} == {P1, P2, P3}

    pair("2026-03-15", "42.42", "6000", "2000", server)  # late entry in the open period
    second, failure = sync_until_failure(cfg, state=state)
    assert failure is None
    after = records(second, TB)
    # The closed period P1 is not read again; P2 (reread_periods=1) and P3 are.
    assert {r["period"] for r in after} == {P2, P3}
    key = ("period", "reporting_book", "entity", "account_id", "currency")
    old, new = balances(before, *key), balances(after, *key)
    assert set(new) <= set(old)  # same keys: the rows upsert, none is added
    changed = {k[3] for k in new if new[k] != old[k]}
    assert changed == {"6000", "2000"}
    assert all(k[0] == P3 for k in new if new[k] != old[k])
    assert new[(P3, "ACCRUAL", "", "6000", "USD")][1] == Decimal("42.42")


def test_a_failed_report_stops_its_partition_and_fails_the_run_naming_it(
    server: EmulatorServer, tmp_path: Path
) -> None:
    reports_of(server).switches.fail_periods = [P2]
    cfg = config(
        server,
        tmp_path,
        balance_reports=["trial_balance"],
        balance_periods=[P1, P2, P3],
        balance_entities=["E100", "E200"],
    )
    messages, failure = sync_until_failure(cfg)
    assert failure is not None
    text = str(failure)
    assert "2 report(s) failed" in text
    assert "trial_balance 2026-02 book ACCRUAL entity E100" in text
    assert "entity E200" in text
    assert "status failed" in text
    rows = records(messages, TB)
    assert {r["period"] for r in rows} == {P1}  # nothing after the failure: no silent gap
    # The entity went into the report body: each partition sees only its own lines.
    by_entity = {(r["entity"], r["account_id"]): r["debit"] for r in rows}
    assert by_entity == {
        ("E100", "6000"): "250.10",
        ("E100", "1000"): "0",
        ("E200", "1100"): "1234.56",
        ("E200", "4000"): "0",
    }
    parts = bookmarks(messages, TB)["partitions"]
    assert sorted((p["context"]["entity"], p["replication_key_value"]) for p in parts) == [
        ("E100", P1),
        ("E200", P1),
    ]


def test_balance_by_dimension_keys_each_dimension(server: EmulatorServer, tmp_path: Path) -> None:
    cfg = config(
        server,
        tmp_path,
        objects=["general-ledger/journal-entry", "general-ledger/journal-entry-line"],
        balance_reports=["account_balance_by_dimension"],
        balance_periods=[P3],
        balance_dimensions=["department", "location"],
    )
    messages, failure = sync_until_failure(cfg)
    assert failure is None
    schema = next(m for m in messages if m["type"] == "SCHEMA" and m["stream"] == ABD)
    assert schema["key_properties"] == [
        "period", "reporting_book", "entity", "account_id",
        "department_id", "location_id", "currency",
    ]  # fmt: skip
    rows = records(messages, ABD)
    expected = from_lines(
        records(messages, "general_ledger__journal_entry"),
        records(messages, "general_ledger__journal_entry_line"),
        P3,
        by=("department", "location"),
    )
    assert balances(rows, "account_id", "department_id", "location_id") == expected
    assert ("1000", "D1", "") in expected  # the March debit, by its department
    assert ("6000", "", "E100") in expected  # January's line, as opening, by its location


# -- the submit-poll-download client ---------------------------------------------------------


@pytest.fixture
def runner_parts(server: EmulatorServer, tmp_path: Path) -> Iterator[tuple[TapIntacct, list]]:
    tap = TapIntacct(config=config(server, tmp_path))
    try:
        yield tap, []
    finally:
        tap.close()


def _runner(tap: TapIntacct, sleeps: list[float], policy: PollPolicy) -> ReportRunner:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    return ReportRunner(tap.client, policy, sleep=sleep, clock=lambda: clock[0])


def test_polling_honours_retry_after_then_backs_off_and_times_out(
    server: EmulatorServer, runner_parts: tuple[TapIntacct, list]
) -> None:
    tap, sleeps = runner_parts
    switches = reports_of(server).switches
    body = request_body(BALANCE_REPORTS["trial_balance"], P1, reporting_book="ACCRUAL", entity=None)
    policy = PollPolicy(timeout=100, min_interval=1, max_interval=30)

    switches.pending_polls, switches.retry_after, switches.see_other = 3, 5, True
    output = _runner(tap, sleeps, policy).run("gl-report-trial-balance", body, name="tb")
    assert sleeps == [5, 5, 5]  # the server's hint, three pending answers
    assert output.polls == 4  # the fourth answer: completed (as a 303 See Other)
    assert "Account ID" in output.text()

    sleeps.clear()
    switches.retry_after, switches.see_other = None, False
    _runner(tap, sleeps, policy).run("gl-report-trial-balance", body, name="tb")
    assert sleeps == [1, 2, 4]  # no hint: doubling from the minimum interval

    sleeps.clear()
    switches.pending_polls, switches.retry_after = 1000, 40
    with pytest.raises(ReportTimeoutError) as caught:
        _runner(tap, sleeps, policy).run("gl-report-trial-balance", body, name="tb 2026-01")
    assert sleeps == [30, 30, 30, 10]  # a 40 s hint capped at 30 s, the last wait the remainder
    assert "tb 2026-01: report" in str(caught.value)
    assert "after 5 status calls" in str(caught.value)
    assert caught.value.report_id


def test_report_requests_carry_the_entity_in_the_body_never_in_the_header(
    server: EmulatorServer, tmp_path: Path
) -> None:
    tap = TapIntacct(config=config(server, tmp_path, entity="E100"))  # a connection-level entity
    try:
        body = request_body(
            BALANCE_REPORTS["trial_balance"], P1, reporting_book="ACCRUAL", entity="E200"
        )
        output = ReportRunner(tap.client, PollPolicy(min_interval=0.01)).run(
            "gl-report-trial-balance", body, name="tb"
        )
    finally:
        tap.close()
    assert reports_of(server).entity_headers == [None]
    rows = list(parse_balances(output.text(), report="tb"))
    assert {r.account_id for r in rows} == {"1100", "4000"}  # only E200's January lines
    # The connection's entity alone makes it the streams' one partition, filtered in the body.
    cfg = config(server, tmp_path, entity="E100", balance_reports=["trial_balance"],
                 balance_periods=[P1])  # fmt: skip
    messages, failure = sync_until_failure(cfg)
    assert failure is None
    assert {(r["entity"], r["account_id"]) for r in records(messages, TB)} == {
        ("E100", "6000"),
        ("E100", "1000"),
    }
    assert reports_of(server).entity_headers == [None, None]


# -- request shapes, output reading, settings -------------------------------------------------


@pytest.mark.parametrize("key", sorted(BALANCE_REPORTS))
def test_submission_bodies_follow_the_spec(key: str) -> None:
    report = BALANCE_REPORTS[key]
    schema = default_registry().operation(report.operation_id).request_schema()
    assert schema is not None
    body = request_body(
        report, "2024-02", reporting_book="CASH", entity="E100", dimensions=("department",)
    )
    jsonschema.Draft202012Validator(schema).validate(body)
    parameters = body["parameters"]
    assert parameters["timePeriod"]["dateRange"] == {
        "startDate": "2024-02-01",
        "endDate": "2024-02-29",
    }
    assert parameters["dimensions"] == {"location": {"id": "E100"}}  # the entity, in the body
    assert body["outputType"] == "csv"
    top = request_body(report, "2024-02", reporting_book="CASH", entity=None)
    assert "dimensions" not in top["parameters"]


def test_report_csv_is_read_by_header_exactly_or_refused() -> None:
    text = (
        "\ufeffAccount No,Account Name,Beginning Balance,Debits,Credits,Ending Balance\n"
        '1000,Cash,"1,234.50",10.10,0,"1,244.60"\n'
        "2000,Payables,(5.00),0,1.00,(6.00)\n"
        ",Subtotal,,,,\n"
        "Total,,0,10.10,1.00,0\n"
    )
    rows = list(parse_balances(text.encode().decode("utf-8-sig"), report="tb"))
    assert [(r.account_id, r.opening_balance, r.closing_balance) for r in rows] == [
        ("1000", "1234.50", "1244.60"),
        ("2000", "-5.00", "-6.00"),
    ]
    with pytest.raises(ReportFormatError, match="lacks the column\\(s\\) debit, credit"):
        list(parse_balances("Account ID,Opening Balance,Closing Balance\n1,0,0\n", report="tb"))
    with pytest.raises(ReportFormatError, match="line 2, column debit"):
        list(parse_balances("Account ID,Opening,Debit,Credit,Closing Balance\n"
                            "1,0,abc,0,0\n".replace("Opening", "Opening Balance"),
                            report="tb"))  # fmt: skip


def test_balance_streams_are_opt_in_and_declare_exact_decimals(
    server: EmulatorServer, tmp_path: Path
) -> None:
    plain = TapIntacct(config=config(server, tmp_path))
    try:
        assert not set(plain.streams) & report_streams.BALANCE_STREAM_NAMES
    finally:
        plain.close()
    tap = TapIntacct(
        config=config(server, tmp_path, balance_reports=["trial_balance"], balance_start_period=P1)
    )
    try:
        stream = tap.streams[TB]
        assert stream.replication_key == "period"
        assert stream.primary_keys == ["period", "reporting_book", "entity", "account_id",
                                       "currency"]  # fmt: skip
        for amount in ("opening_balance", "debit", "credit", "closing_balance"):
            assert stream.schema["properties"][amount]["format"] == DECIMAL_FORMAT
    finally:
        tap.close()
    with pytest.raises(ValueError, match="unknown report"):
        BalanceOptions.from_config({"balance_reports": ["cash_flow"], "balance_periods": [P1]})
    with pytest.raises(ValueError, match="balance_start_period or balance_periods"):
        BalanceOptions.from_config({"balance_reports": ["trial_balance"]})
    options = BalanceOptions.from_config(
        {"balance_start_period": "2025-11", "balance_reread_periods": 2}
    )
    assert options.periods_to_read(None, P2) == period_range("2025-11", P2)
    assert options.periods_to_read(P2, P2) == ["2025-12", P1, P2]
    assert options.periods_to_read("2025-10", P1) == ["2025-11", "2025-12", P1]


def test_emulator_reports_service_refuses_what_it_cannot_render(server: EmulatorServer) -> None:
    url = server.base_url + "/services/reports/general-ledger/trial-balance"
    headers = server.auth_headers()
    no_name = server.http.post(url, json={"outputType": "csv"}, headers=headers)
    assert no_name.status_code == 400
    assert "reportName" in no_name.text
    pdf = server.http.post(url, json={"reportName": "x", "outputType": "pdf"}, headers=headers)
    assert pdf.status_code == 400
    unknown = server.http.get(
        server.base_url + "/services/reports/status",
        params={"reportId": "999", "outputType": "csv", "outputLocation": "intacct"},
        headers=headers,
    )
    assert unknown.status_code == 404
    control = httpx.post(server.root_url + "/_emulator/reports", json={"pending_polls": 4})
    assert control.json()["pending_polls"] == 4
