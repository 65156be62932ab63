"""Asynchronous reports: submit, poll the status with bounded waits, download the output.

Why a module of its own: Intacct's reports service (``specs/reports.json``) is asynchronous.
``POST /services/reports/<app>/<report>`` answers **202** with ``ia::result.reportId`` (status
``submitted`` or ``failed``); ``GET /services/reports/status?reportId&outputType&outputLocation``
says ``pending``, ``completed``, ``failed`` or ``canceled`` (200, or 303 "See Other" once there
is something to fetch); ``GET /services/reports/download?reportId&outputType`` returns the file.
Any async report (GL, inventory) follows the same three steps, so they live here, in the shared
core, and go through :class:`~intacct_api.client.IntacctClient` (tokens, retries, errors).

Polling is bounded: it stops with :class:`ReportTimeoutError` after ``timeout`` seconds, and
between polls it waits what the status answer asks for (``Retry-After`` or an
``X-IA-*-Retry-After`` header), kept within ``[min_interval, max_interval]``; without a hint it
backs off from ``min_interval`` doubling up to ``max_interval``. A report that ends ``failed`` or
``canceled`` raises :class:`ReportFailedError` naming the report and its id: never an empty
result that would read as "no balances".

The reports service ignores the entity header (Sage's entity-filter guide): callers put the
entity in the request body (``parameters.dimensions.location.id``), and the requests here carry
no entity header at all, so a connection-level ``entity`` cannot leak in and mislead a reader of
the traffic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from intacct_api.client import IntacctClient
from intacct_api.errors import IntacctError
from intacct_api.retry import retry_after_from_headers

__all__ = [
    "DOWNLOAD_OPERATION",
    "STATUS_OPERATION",
    "PollPolicy",
    "ReportError",
    "ReportFailedError",
    "ReportOutput",
    "ReportRunner",
    "ReportTimeoutError",
]

logger = logging.getLogger(__name__)

STATUS_OPERATION = "get-services-report-status"
DOWNLOAD_OPERATION = "report-download"
DONE_STATES = frozenset({"completed"})
FAILED_STATES = frozenset({"failed", "canceled"})


class ReportError(IntacctError):
    """A report could not be produced; ``report`` names it, ``report_id`` is Intacct's id."""

    def __init__(self, message: str, *, report: str, report_id: str | None = None) -> None:
        super().__init__(message)
        self.report = report
        self.report_id = report_id


class ReportFailedError(ReportError):
    """The reports service said ``failed`` or ``canceled`` (at submission or later)."""


class ReportTimeoutError(ReportError):
    """Still not completed when the polling budget ran out."""


@dataclass(frozen=True)
class PollPolicy:
    """How long to wait for a report, and how often to ask."""

    timeout: float = 600.0
    min_interval: float = 1.0
    max_interval: float = 30.0


@dataclass
class ReportOutput:
    """A completed report: its id, the status answers seen, and the downloaded bytes."""

    report_id: str
    output_type: str
    content: bytes = field(repr=False)
    polls: int = 0
    content_type: str | None = None

    def text(self) -> str:
        """The output decoded as UTF-8 (a byte-order mark, as Excel-minded exports add, dropped)."""
        return self.content.decode("utf-8-sig")


class ReportRunner:
    """Runs reports through one :class:`IntacctClient`.

    ``sleep`` and ``clock`` are injectable so tests can observe the waits without taking them.
    """

    def __init__(
        self,
        client: IntacctClient,
        policy: PollPolicy | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.policy = policy or PollPolicy()
        self._sleep = sleep
        self._clock = clock

    def _path(self, operation_id: str) -> tuple[str, str]:
        op = self.client.spec_registry().operation(operation_id)
        return op.method, op.path

    def run(
        self,
        operation_id: str,
        body: Mapping[str, Any],
        *,
        name: str,
        output_type: str = "csv",
        output_location: str = "intacct",
    ) -> ReportOutput:
        """Submit ``body`` to ``operation_id``, wait for completion, download the output.

        ``name`` is what errors call the report (for example ``trial balance 2026-03 E100``).
        """
        report_id = self.submit(operation_id, body, name=name)
        polls = self.wait(report_id, name=name, output_type=output_type,
                          output_location=output_location)  # fmt: skip
        output = self.download(report_id, name=name, output_type=output_type)
        output.polls = polls
        return output

    def submit(self, operation_id: str, body: Mapping[str, Any], *, name: str) -> str:
        """POST the report definition; the ``reportId`` of the accepted (202) submission."""
        method, path = self._path(operation_id)
        answer = self.client.request(
            method, path, json=dict(body), entity=None, operation=operation_id, expected=(200, 202)
        )
        result = _result(answer.json())
        report_id = str(result.get("reportId") or "")
        status = str(result.get("status") or "")
        if status in FAILED_STATES:
            raise ReportFailedError(
                f"{name}: the reports service refused the submission (status {status})",
                report=name,
                report_id=report_id or None,
            )
        if not report_id:
            raise ReportFailedError(
                f"{name}: the submission answer carries no reportId", report=name
            )
        logger.info("%s: submitted as report %s", name, report_id)
        return report_id

    def wait(
        self,
        report_id: str,
        *,
        name: str,
        output_type: str = "csv",
        output_location: str = "intacct",
    ) -> int:
        """Poll the status until ``completed``; returns the number of status calls made."""
        method, path = self._path(STATUS_OPERATION)
        params = {"reportId": report_id, "outputType": output_type,
                  "outputLocation": output_location}  # fmt: skip
        deadline = self._clock() + self.policy.timeout
        backoff = self.policy.min_interval
        polls = 0
        while True:
            answer = self.client.request(
                method, path, params=params, entity=None, operation=STATUS_OPERATION,
                expected=(200, 303),
            )  # fmt: skip
            polls += 1
            status = str(_result(answer.json()).get("status") or "")
            if status in DONE_STATES:
                return polls
            if status in FAILED_STATES:
                raise ReportFailedError(
                    f"{name}: report {report_id} ended with status {status}",
                    report=name,
                    report_id=report_id,
                )
            hint = retry_after_from_headers(answer.headers)
            if hint is not None:
                pause = min(max(hint.seconds, self.policy.min_interval), self.policy.max_interval)
            else:
                pause = backoff
                backoff = min(backoff * 2, self.policy.max_interval)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ReportTimeoutError(
                    f"{name}: report {report_id} still {status or 'unknown'} after "
                    f"{polls} status calls ({self.policy.timeout:g} s budget; raise "
                    "report_timeout_seconds if the company's reports are slow)",
                    report=name,
                    report_id=report_id,
                )
            self._sleep(min(pause, remaining))

    def download(self, report_id: str, *, name: str, output_type: str = "csv") -> ReportOutput:
        """GET the completed report's output."""
        method, path = self._path(DOWNLOAD_OPERATION)
        answer = self.client.request(
            method,
            path,
            params={"reportId": report_id, "outputType": output_type},
            entity=None,
            operation=DOWNLOAD_OPERATION,
            headers={"Accept": "*/*"},
        )
        logger.info("%s: downloaded report %s (%d bytes)", name, report_id, len(answer.content))
        return ReportOutput(
            report_id=report_id,
            output_type=output_type,
            content=answer.content,
            content_type=answer.headers.get("content-type"),
        )


def _result(body: Any) -> dict[str, Any]:
    """``ia::result`` of a status-style answer (an object; a one-element list is tolerated)."""
    result = body.get("ia::result") if isinstance(body, dict) else None
    if isinstance(result, list) and result and isinstance(result[0], dict):
        return result[0]
    return result if isinstance(result, dict) else {}
