"""The reports service for the three GL balance reports, computed from the journal lines held.

Why: the tap's balance streams (issue 16) submit a report, poll its status and download it;
testing that over real HTTP needs a server that does the same, with balances that can be
checked against the journal-entry-line stream. Shapes follow ``specs/reports.json``:

* ``POST /services/reports/general-ledger/{trial-balance,account-balance,
  account-balance-by-dimension}`` -> **202** ``ia::result {reportId, status: submitted, name,
  outputType, outputLocation, href}``;
* ``GET /services/reports/status?reportId&outputType&outputLocation`` -> ``pending`` (with a
  ``Retry-After`` hint when the switch asks), then ``completed`` with ``downloadURL`` (200, or
  303 "See Other" when ``see_other`` is on), or ``failed``;
* ``GET /services/reports/download?reportId&outputType`` -> the CSV.

How balances are computed (opening = every counted line dated before the period, debit and
credit = the lines inside it, closing = opening + debit - credit):

* a line's date is its ``entryDate``, else its journal entry's ``postingDate`` (``entryDate``
  is read-only, so lines created through the API carry only the header's date);
* a line counts unless its state (the line's, else the entry's) is one of
  :data:`NOT_POSTED`;
* its amount is ``txnAmount``: the emulated company has one currency, :data:`BASE_CURRENCY`;
* the entity is ``parameters.dimensions.location.id``: lines created in that entity or
  carrying that location (the entity header is ignored, as Intacct's reports service does);
* ``reportingBook`` is echoed but not modelled: every book sees the same lines.

Switches (``/_emulator/reports`` or :class:`ReportSwitches` on ``app.state.reports``):
``pending_polls`` (status answers that say ``pending`` before ``completed``: the processing
delay, counted in polls so tests need no clock), ``retry_after`` (seconds put in the pending
answers' ``Retry-After``), ``fail`` (report names, e.g. ``trial-balance``, or ``*``, that end
``failed``), ``fail_periods`` (``YYYY-MM`` months whose reports end ``failed``),
``see_other`` (answer ``completed`` with 303).
"""

from __future__ import annotations

import csv
import io
import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from intacct_emulator.company import Company
from intacct_emulator.config import API_PREFIX, CONTROL_PREFIX
from intacct_emulator.http_errors import error_response, invalid_request, json_response
from intacct_emulator.store import decode

__all__ = ["BASE_CURRENCY", "NOT_POSTED", "REPORTS", "ReportSwitches", "ReportsService"]

REPORTS = ("trial-balance", "account-balance", "account-balance-by-dimension")
NOT_POSTED = frozenset({"draft", "submitted", "partiallyApproved", "declined"})
BASE_CURRENCY = "USD"
ENTRY = "general-ledger/journal-entry"
LINE = "general-ledger/journal-entry-line"
_decoder = msgspec.json.Decoder()
_ZERO = Decimal(0)


@dataclass
class ReportSwitches:
    """What a test can make the reports service do (see the module docstring)."""

    pending_polls: int = 0
    retry_after: float | None = None
    fail: list[str] = field(default_factory=list)
    fail_periods: list[str] = field(default_factory=list)
    see_other: bool = False


@dataclass
class _Job:
    report: str
    body: dict[str, Any]
    pending_left: int
    state: str = "submitted"
    output: bytes | None = None


class ReportsService:
    """Report jobs of one emulator (thread-safe: the control surface may run elsewhere)."""

    def __init__(self, company: Company) -> None:
        self.company = company
        self.switches = ReportSwitches()
        self._jobs: dict[str, _Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.entity_headers: list[str | None] = []
        """Entity header of each submission: ignored, as Intacct does; tests check none is sent."""

    def reset(self) -> None:
        """Default switches (``/_emulator/reset``)."""
        self.switches = ReportSwitches()

    def routes(self) -> list[Route]:
        base = API_PREFIX + "/services/reports"
        return [
            Route(base + "/general-ledger/{report}", self.submit, methods=["POST"]),
            Route(base + "/status", self.status, methods=["GET"]),
            Route(base + "/download", self.download, methods=["GET"]),
            Route(CONTROL_PREFIX + "/reports", self.control, methods=["GET", "POST"]),
        ]

    # -- HTTP ----------------------------------------------------------------------------------

    async def submit(self, request: Request) -> Response:
        report = request.path_params["report"]
        if report not in REPORTS:
            return error_response(
                404, "notFound", f"The emulator has no report {report!r}", "REST-1004"
            )
        try:
            body = _decoder.decode(await request.body())
        except msgspec.DecodeError:
            return invalid_request("The request body is not valid JSON", "REST-1064")
        self.entity_headers.append(request.headers.get("x-ia-api-param-entity"))
        problem = _check(body)
        if problem is not None:
            return invalid_request(problem, "REST-1064")
        with self._lock:
            report_id = str(next(self._ids))
            self._jobs[report_id] = _Job(report, body, max(0, self.switches.pending_polls))
        result = {
            "reportId": report_id,
            "status": "submitted",
            "name": body.get("reportName"),
            "outputType": "csv",
            "outputLocation": "intacct",
            "href": _status_href(report_id),
        }
        return json_response({"ia::result": result, "ia::meta": _meta()}, 202)

    async def status(self, request: Request) -> Response:
        report_id = request.query_params.get("reportId", "")
        job = self._jobs.get(report_id)
        if job is None:
            return _unknown(report_id)
        headers: dict[str, str] = {}
        with self._lock:
            if job.state in ("submitted", "pending") and job.pending_left > 0:
                job.pending_left -= 1
                job.state = "pending"
                if self.switches.retry_after is not None:
                    headers["Retry-After"] = f"{self.switches.retry_after:g}"
            elif job.state in ("submitted", "pending"):
                failing = self._fails(job)
                job.state = "failed" if failing else "completed"
                if not failing:
                    job.output = self.render(job.report, job.body)
        result: dict[str, Any] = {
            "reportId": report_id,
            "status": job.state,
            "name": job.body.get("reportName"),
            "outputType": "csv",
            "outputLocation": "intacct",
            "href": _status_href(report_id),
        }
        status = 200
        if job.state == "completed":
            download = f"/services/reports/download?reportId={report_id}&outputType=csv"
            result["downloadURL"] = download
            if self.switches.see_other:
                status = 303
                headers["Location"] = API_PREFIX + download
        return json_response({"ia::result": result, "ia::meta": _meta()}, status, headers)

    def _fails(self, job: _Job) -> bool:
        """The ``fail`` / ``fail_periods`` switches applied to one job."""
        dates = job.body["parameters"]["timePeriod"]["dateRange"]
        return (
            "*" in self.switches.fail
            or job.report in self.switches.fail
            or str(dates["startDate"])[:7] in self.switches.fail_periods
        )

    async def download(self, request: Request) -> Response:
        report_id = request.query_params.get("reportId", "")
        job = self._jobs.get(report_id)
        if job is None:
            return _unknown(report_id)
        if job.output is None:
            return invalid_request(f"Report {report_id} is {job.state}, not completed", "REST-1064")
        return Response(job.output, media_type="application/octet-stream")

    async def control(self, request: Request) -> Response:
        if request.method == "POST":
            changes = _decoder.decode(await request.body() or b"{}")
            with self._lock:
                for name, value in dict(changes).items():
                    if not hasattr(self.switches, name):
                        return invalid_request(f"unknown reports switch {name!r}", "REST-1064")
                    setattr(self.switches, name, value)
        return json_response(asdict(self.switches))

    # -- balances --------------------------------------------------------------------------------

    def render(self, report: str, body: Mapping[str, Any]) -> bytes:
        """The CSV output of one report request."""
        params = body.get("parameters") or {}
        dates = params["timePeriod"]["dateRange"]
        start, end = str(dates["startDate"]), str(dates["endDate"])
        entity = ((params.get("dimensions") or {}).get("location") or {}).get("id")
        dims: list[str] = []
        if report == "account-balance-by-dimension":
            shown = params.get("showDimensionValues") or {}
            dims = [d for d in shown if d != "account" and (shown[d] or {}).get("includeId")]
        totals: dict[tuple[str, ...], list[Decimal]] = {}
        names: dict[str, str] = {}
        for line, day in self.counted_lines(entity):
            account = str(((line.get("glAccount") or {}).get("id")) or "")
            if not account or day > end:
                continue
            if (line.get("glAccount") or {}).get("name"):
                names[account] = str(line["glAccount"]["name"])
            dimension_values = line.get("dimensions") or {}
            group = (account, *(str((dimension_values.get(d) or {}).get("id") or "") for d in dims))
            sums = totals.setdefault(group, [_ZERO, _ZERO, _ZERO])
            amount = _decimal(line.get("txnAmount"))
            debit = line.get("txnType") == "debit"
            if day < start:
                sums[0] += amount if debit else -amount
            else:
                sums[1 if debit else 2] += amount
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        headings = [f"{d[0].upper()}{d[1:]} ID" for d in dims]
        writer.writerow(["Account ID", "Account Name", *headings, "Currency",
                         "Opening Balance", "Debit", "Credit", "Closing Balance"])  # fmt: skip
        grand = [_ZERO, _ZERO, _ZERO, _ZERO]
        for group in sorted(totals):
            opening, debit_sum, credit_sum = totals[group]
            closing = opening + debit_sum - credit_sum
            if not (opening or debit_sum or credit_sum or closing):
                continue  # showZeroBalanceAccounts: onlyWithActivity
            amounts = [opening, debit_sum, credit_sum, closing]
            grand = [g + a for g, a in zip(grand, amounts, strict=True)]
            writer.writerow([group[0], names.get(group[0], ""), *group[1:], BASE_CURRENCY,
                             *(format(a, "f") for a in amounts)])  # fmt: skip
        writer.writerow(["Total", "", *("" for _ in dims), BASE_CURRENCY,
                         *(format(a, "f") for a in grand)])  # fmt: skip
        return out.getvalue().encode()

    def counted_lines(self, entity: str | None) -> Iterable[tuple[dict[str, Any], str]]:
        """(line, ISO date) of every line that counts in balances, for an entity or all."""
        store = self.company.store
        headers: dict[int, tuple[str | None, str | None]] = {}
        for key, _row_entity, data in store.select(ENTRY, [], []):
            entry = decode(data)
            headers[int(key)] = (entry.get("postingDate"), entry.get("state"))
        for _key, row_entity, parent, data in store.select(
            LINE, [], [], columns="key, entity, parent, data"
        ):
            line = decode(data)
            posting, entry_state = (
                headers.get(int(parent), (None, None)) if parent else (None, None)
            )
            day = line.get("entryDate") or posting
            state = line.get("state") or entry_state
            if not day or state in NOT_POSTED:
                continue
            location = ((line.get("dimensions") or {}).get("location") or {}).get("id")
            if entity and entity not in (row_entity, location):
                continue
            yield line, str(day)[:10]


def _check(body: Any) -> str | None:
    """Why a submission is refused (the spec's required field, and what the emulator needs)."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    if not isinstance(body.get("reportName"), str) or not body["reportName"]:
        return "reportName is required"
    if body.get("outputType", "html") != "csv" or body.get("outputLocation", "intacct") != (
        "intacct"
    ):
        return "The emulator renders reports only as outputType csv in outputLocation intacct"
    dates = ((body.get("parameters") or {}).get("timePeriod") or {}).get("dateRange") or {}
    if not (isinstance(dates.get("startDate"), str) and isinstance(dates.get("endDate"), str)):
        return "The emulator needs parameters.timePeriod.dateRange.startDate and endDate"
    return None


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else _ZERO
    except InvalidOperation:
        return _ZERO


def _status_href(report_id: str) -> str:
    return f"/services/reports/status?reportId={report_id}&outputType=csv&outputLocation=intacct"


def _meta() -> dict[str, int]:
    return {"totalCount": 1, "totalSuccess": 1, "totalError": 0}


def _unknown(report_id: str) -> Response:
    return error_response(404, "notFound", f"Report {report_id!r} was not found", "REST-1004")
