"""GL balance reports: periods, request bodies and the reading of their CSV output.

Why: account balances cannot be rebuilt from journal lines alone (opening balances, closing
entries, reporting books); Intacct's reports service computes them. Three reports of
``specs/reports.json`` are used, each submitted, polled and downloaded by
:class:`intacct_api.reports.ReportRunner`:

* ``gl-report-trial-balance`` (``POST /services/reports/general-ledger/trial-balance``)
* ``gl-report-account-balance`` (``.../account-balance``)
* ``gl-report-account-balance-by-dimension`` (``.../account-balance-by-dimension``)

What a *period* is here (assumed, see docs/FIDELITY.md): a calendar month ``YYYY-MM``, sent as
``parameters.timePeriod.dateRange`` from its first to its last day. Intacct companies can define
other reporting periods (4-4-5 weeks, fiscal years); those would need
``timePeriod.periodToDate.reportingPeriod`` instead, which is not done yet.

The entity goes into the body (``parameters.dimensions.location.id``) because the reports
service ignores the entity header.

The output is requested as CSV (the spec offers html, pdf, csv, excel, text; CSV is the only
one a program can read). The spec does not describe the CSV's columns: :func:`parse_balances`
reads them by header name, accepts a few spellings, and refuses (naming the columns it saw) a
file that lacks the account or any amount column, rather than guess.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pendulum

from intacct_api.reports import ReportError

__all__ = [
    "AMOUNT_COLUMNS",
    "BALANCE_REPORTS",
    "DIMENSIONS",
    "BalanceReport",
    "BalanceRow",
    "ReportFormatError",
    "dimension_column",
    "parse_balances",
    "parse_period",
    "period_bounds",
    "period_range",
    "request_body",
    "shift_period",
]

_PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class BalanceReport:
    """One of the three balance reports: its setting name, stream and operation."""

    key: str
    """Name in the ``balance_reports`` setting (``trial_balance``)."""
    stream: str
    operation_id: str
    by_dimension: bool = False


BALANCE_REPORTS: Mapping[str, BalanceReport] = {
    r.key: r
    for r in (
        BalanceReport("trial_balance", "general_ledger__trial_balance", "gl-report-trial-balance"),
        BalanceReport(
            "account_balance", "general_ledger__account_balance", "gl-report-account-balance"
        ),
        BalanceReport(
            "account_balance_by_dimension",
            "general_ledger__account_balance_by_dimension",
            "gl-report-account-balance-by-dimension",
            by_dimension=True,
        ),
    )
}

DIMENSIONS: tuple[str, ...] = (
    "location", "department", "employee", "project", "task", "customer", "vendor",
    "warehouse", "class", "costType", "asset", "contract", "affiliateEntity", "item",
    "productLine",
)  # fmt: skip
"""The members of the spec's ``report-dimensions-ref`` (what a report can break down by)."""

AMOUNT_COLUMNS = ("opening_balance", "debit", "credit", "closing_balance")


class ReportFormatError(ReportError):
    """The downloaded output is not the table expected (missing columns, unreadable amount)."""


# -- periods ------------------------------------------------------------------------------------


def parse_period(value: str) -> str:
    """``YYYY-MM`` checked (month 01-12); a date ``YYYY-MM-DD`` is accepted and cut to its month."""
    text = str(value).strip()
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        text = text[:7]
    match = _PERIOD_RE.match(text)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"a period is a calendar month written YYYY-MM, not {value!r}")
    return text


def _first_day(period: str) -> pendulum.Date:
    year, month = (int(p) for p in parse_period(period).split("-"))
    return pendulum.Date(year, month, 1)


def period_bounds(period: str) -> tuple[dt.date, dt.date]:
    """First and last day of a calendar-month period."""
    first = _first_day(period)
    last = first.end_of("month")
    return dt.date(first.year, first.month, first.day), dt.date(last.year, last.month, last.day)


def shift_period(period: str, months: int) -> str:
    """The period ``months`` calendar months later (earlier when negative)."""
    moved = _first_day(period).add(months=months)
    return f"{moved.year:04d}-{moved.month:02d}"


def period_range(first: str, last: str) -> list[str]:
    """Every period from ``first`` to ``last`` inclusive (empty when ``first`` is later)."""
    out: list[str] = []
    current = parse_period(first)
    end = parse_period(last)
    while current <= end:
        out.append(current)
        current = shift_period(current, 1)
    return out


# -- requests -----------------------------------------------------------------------------------


def request_body(
    report: BalanceReport,
    period: str,
    *,
    reporting_book: str,
    entity: str | None,
    dimensions: Sequence[str] = (),
) -> dict[str, Any]:
    """The submission body of one report for one period and entity (spec-valid, see tests)."""
    start, end = period_bounds(period)
    parameters: dict[str, Any] = {
        "timePeriod": {"dateRange": {"startDate": start.isoformat(), "endDate": end.isoformat()}},
        "reportingBook": reporting_book,
    }
    if entity:
        # The reports service ignores the entity header: the entity is a location filter.
        parameters["dimensions"] = {"location": {"id": entity}}
    if report.key == "trial_balance":
        parameters["showDebitCreditBalances"] = True
        parameters["showZeroBalanceAccounts"] = "onlyWithActivity"
    elif report.key == "account_balance":
        parameters["txnPresentation"] = "summary"
        parameters["showZeroBalanceAccounts"] = "onlyWithActivity"
    else:
        parameters["accountSelection"] = "all"
        parameters["dimensionPresentation"] = "sideBySide"
        shown: dict[str, Any] = {"account": {"includeId": True}}
        for name in dimensions:
            shown[name] = {"includeId": True}
        parameters["showDimensionValues"] = shown
    where = f" {entity}" if entity else ""
    return {
        "reportName": f"tap-intacct {report.key} {period}{where}",
        "outputType": "csv",
        "outputLocation": "intacct",
        "parameters": parameters,
    }


# -- output ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BalanceRow:
    """One line of a balance report, amounts as exact decimal text."""

    account_id: str
    account_name: str | None
    currency: str | None
    opening_balance: str
    debit: str
    credit: str
    closing_balance: str
    dimensions: Mapping[str, str]


def dimension_column(name: str) -> str:
    """Record column of a dimension id: ``department`` -> ``department_id``,
    ``costType`` -> ``cost_type_id``."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower() + "_id"


def _norm(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


_ALIASES: Mapping[str, tuple[str, ...]] = {
    "account_id": ("accountid", "accountno", "accountnumber", "glaccountid", "account"),
    "account_name": ("accountname", "accounttitle", "glaccountname"),
    "currency": ("currency", "basecurrency", "currencycode"),
    "opening_balance": ("openingbalance", "beginningbalance", "openbalance"),
    "debit": ("debit", "debits", "debitamount"),
    "credit": ("credit", "credits", "creditamount"),
    "closing_balance": ("closingbalance", "endingbalance", "endbalance"),
}
_REQUIRED = ("account_id", *AMOUNT_COLUMNS)


def _amount(raw: str, *, report: str, column: str, line: int) -> str:
    """Exact decimal text of a report cell: thousands separators dropped, ``(1.00)`` negative."""
    text = raw.strip().replace(",", "")
    if not text:
        return "0"
    negative = text.startswith("(") and text.endswith(")")
    if negative:
        text = text[1:-1]
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ReportFormatError(
            f"{report}: line {line}, column {column}: {raw!r} is not an amount", report=report
        ) from None
    if not value.is_finite():
        raise ReportFormatError(
            f"{report}: line {line}, column {column}: {raw!r} is not an amount", report=report
        )
    return format(-value if negative else value, "f")


def _columns(header: Sequence[str], dimensions: Sequence[str], report: str) -> dict[str, int]:
    normalised = [_norm(h) for h in header]
    found: dict[str, int] = {}
    for column, spellings in _ALIASES.items():
        for spelling in spellings:
            if spelling in normalised:
                found[column] = normalised.index(spelling)
                break
    for name in dimensions:
        spellings = (_norm(name) + "id", _norm(name))
        for spelling in spellings:
            if spelling in normalised:
                found["dim:" + name] = normalised.index(spelling)
                break
    missing = [c for c in _REQUIRED if c not in found]
    missing += [f"{d} id" for d in dimensions if "dim:" + d not in found]
    if missing:
        raise ReportFormatError(
            f"{report}: the report output lacks the column(s) {', '.join(missing)}; its header "
            f"is {', '.join(repr(h) for h in header) or '(empty)'}",
            report=report,
        )
    return found


def parse_balances(
    text: str, *, report: str, dimensions: Sequence[str] = ()
) -> Iterable[BalanceRow]:
    """Rows of a balance report's CSV output; total and blank lines are skipped.

    The header is the first non-empty row. A row without an account id is a subtotal or a
    title line, and rows whose account cell starts with ``Total`` are totals: neither is a
    balance of its own.
    """
    rows = [r for r in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in r)]
    if not rows:
        raise ReportFormatError(f"{report}: the report output is empty", report=report)
    columns = _columns(rows[0], dimensions, report)

    def cell(row: Sequence[str], column: str) -> str:
        index = columns.get(column)
        return row[index].strip() if index is not None and index < len(row) else ""

    for number, row in enumerate(rows[1:], start=2):
        account = cell(row, "account_id")
        if not account or account.lower().startswith("total"):
            continue
        yield BalanceRow(
            account_id=account,
            account_name=cell(row, "account_name") or None,
            currency=cell(row, "currency") or None,
            **{
                name: _amount(cell(row, name), report=report, column=name, line=number)
                for name in AMOUNT_COLUMNS
            },
            dimensions={d: cell(row, "dim:" + d) for d in dimensions},
        )
