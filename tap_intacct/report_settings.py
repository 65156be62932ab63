"""Settings of the GL balance streams (trial balance, account balance, by dimension).

Kept apart from :mod:`tap_intacct.settings` (the query streams' settings) so the two evolve
independently; ``tap.py`` merges both into one config schema, and the README table reads both.
Every setting is prefixed ``balance_`` (or ``report_`` for the polling budget) so the README and
``--about`` group them. Nothing here is read unless ``balance_reports`` names a report: the
streams are opt-in, and without them discovery and the default run are unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from intacct_api.balance_reports import (
    BALANCE_REPORTS,
    DIMENSIONS,
    parse_period,
    period_range,
    shift_period,
)
from intacct_api.reports import PollPolicy
from tap_intacct.settings import string_list

__all__ = ["BALANCE_SETTINGS", "BalanceOptions", "current_period"]

DEFAULT_REREAD_PERIODS = 1
DEFAULT_BOOK = "ACCRUAL"
DEFAULT_DIMENSIONS = ("department",)
DEFAULT_TIMEOUT = 600.0
DEFAULT_POLL_INTERVAL = 2.0
MAX_POLL_INTERVAL = 30.0

_DEFAULT_POLL = PollPolicy(DEFAULT_TIMEOUT, DEFAULT_POLL_INTERVAL, MAX_POLL_INTERVAL)

BALANCE_SETTINGS = th.PropertiesList(
    th.Property(
        "balance_reports",
        th.ArrayType(th.StringType),
        description=(
            "Opt-in GL balance streams, computed by Intacct's reports service: any of "
            "`trial_balance`, `account_balance`, `account_balance_by_dimension` (streams "
            "`general_ledger__<name>`). Empty = none (no report is ever submitted)."
        ),
    ),
    th.Property(
        "balance_start_period",
        th.StringType,
        description=(
            "First period (calendar month, `YYYY-MM`) of the balance streams; they read every "
            "period from it through the current one. After the first run only the open "
            "period and the last `balance_reread_periods` are read again."
        ),
    ),
    th.Property(
        "balance_periods",
        th.ArrayType(th.StringType),
        description=(
            "Instead of `balance_start_period`: exactly these periods (`YYYY-MM`), all read on "
            "every run."
        ),
    ),
    th.Property(
        "balance_reread_periods",
        th.IntegerType,
        default=DEFAULT_REREAD_PERIODS,
        description=(
            "Closed periods before the open one that every run reads again, because late "
            "entries and adjustments still change them (0 = only the open period)."
        ),
    ),
    th.Property(
        "balance_reporting_book",
        th.StringType,
        default=DEFAULT_BOOK,
        description=(
            "Reporting book of the balance reports (`ACCRUAL`, `CASH`, or a consolidation "
            "book id). Part of every record's primary key."
        ),
    ),
    th.Property(
        "balance_dimensions",
        th.ArrayType(th.StringType),
        default=list(DEFAULT_DIMENSIONS),
        description=(
            "Dimensions `account_balance_by_dimension` breaks balances down by: any of "
            + ", ".join(f"`{d}`" for d in DIMENSIONS)
            + ". Each adds a `<dimension>_id` column to the record and its primary key."
        ),
    ),
    th.Property(
        "balance_entities",
        th.ArrayType(th.StringType),
        description=(
            "Entity ids the balance reports are run for, one partition each (sent in the "
            "report body as a location filter: the reports service ignores the entity "
            "header). Empty = the `entities` setting, else the connection's `entity`, else the "
            "top level (all entities together)."
        ),
    ),
    th.Property(
        "report_timeout_seconds",
        th.NumberType,
        default=DEFAULT_TIMEOUT,
        description=(
            "How long one report may stay pending before the stream fails with an error "
            "naming the report, period, entity and Intacct's reportId."
        ),
    ),
    th.Property(
        "report_poll_interval_seconds",
        th.NumberType,
        default=DEFAULT_POLL_INTERVAL,
        description=(
            "Shortest wait between two status calls of a report; the status answer's "
            "Retry-After hint is honoured above it (capped at 30 s), without a hint the wait "
            "doubles up to 30 s."
        ),
    ),
)


@dataclass(frozen=True)
class BalanceOptions:
    """The balance settings, parsed and checked once."""

    reports: tuple[str, ...] = ()
    start_period: str | None = None
    periods: tuple[str, ...] = ()
    reread_periods: int = DEFAULT_REREAD_PERIODS
    reporting_book: str = DEFAULT_BOOK
    dimensions: tuple[str, ...] = DEFAULT_DIMENSIONS
    entities: tuple[str, ...] = ()
    poll: PollPolicy = _DEFAULT_POLL

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BalanceOptions:
        """Parse; a wrong value raises ValueError naming the setting."""
        reports = tuple(dict.fromkeys(string_list(config.get("balance_reports"))))
        unknown = [r for r in reports if r not in BALANCE_REPORTS]
        if unknown:
            raise ValueError(
                f"balance_reports: unknown report(s) {', '.join(unknown)}; choose from "
                + ", ".join(BALANCE_REPORTS)
            )
        dimensions = tuple(dict.fromkeys(string_list(config.get("balance_dimensions"))))
        if config.get("balance_dimensions") is None:
            dimensions = DEFAULT_DIMENSIONS
        wrong = [d for d in dimensions if d not in DIMENSIONS]
        if wrong:
            raise ValueError(
                f"balance_dimensions: unknown dimension(s) {', '.join(wrong)}; choose from "
                + ", ".join(DIMENSIONS)
            )
        start = config.get("balance_start_period")
        periods = tuple(
            sorted({parse_period(p) for p in string_list(config.get("balance_periods"))})
        )
        if reports and not start and not periods:
            raise ValueError("balance_reports needs balance_start_period or balance_periods")
        reread = config.get("balance_reread_periods")
        reread = DEFAULT_REREAD_PERIODS if reread is None else int(reread)
        if reread < 0:
            raise ValueError("balance_reread_periods must be 0 or more")
        timeout = float(config.get("report_timeout_seconds") or DEFAULT_TIMEOUT)
        interval = float(config.get("report_poll_interval_seconds") or DEFAULT_POLL_INTERVAL)
        if timeout <= 0 or interval <= 0:
            raise ValueError("report_timeout_seconds and report_poll_interval_seconds must be > 0")
        return cls(
            reports=reports,
            start_period=parse_period(str(start)) if start else None,
            periods=periods,
            reread_periods=reread,
            reporting_book=str(config.get("balance_reporting_book") or DEFAULT_BOOK),
            dimensions=dimensions,
            entities=tuple(dict.fromkeys(string_list(config.get("balance_entities")))),
            poll=PollPolicy(timeout, interval, max(interval, MAX_POLL_INTERVAL)),
        )

    def periods_to_read(self, bookmark: str | None, current: str) -> list[str]:
        """The periods one run reads: the listed ones, or from the start (or the bookmark less
        ``reread_periods``, whichever is later) through ``current``."""
        if self.periods:
            return list(self.periods)
        first = self.start_period or current
        if bookmark:
            again = shift_period(min(parse_period(bookmark), current), -self.reread_periods)
            first = max(first, again)
        return period_range(first, current)


def current_period(today: dt.date | None = None) -> str:
    """The open period: the calendar month of today (UTC)."""
    day = today or dt.datetime.now(dt.UTC).date()
    return f"{day.year:04d}-{day.month:02d}"
