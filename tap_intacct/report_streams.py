"""GL balance streams: trial balance, account balance and account balance by dimension.

Why from the reports service and not from journal lines: balances include opening balances,
closing entries and reporting books that the lines alone do not reproduce. Each stream submits
one report per period (and entity), polls it and reads its CSV (:mod:`intacct_api.reports`,
:mod:`intacct_api.balance_reports`).

Records have a deterministic primary key -- period, reporting book, entity, account, each
dimension id, currency -- with ``""`` for "none" (top level, a line without that dimension), so
a rerun upserts instead of duplicating. Amounts are exact decimal text (``x-singer.decimal``).

Incremental by period: the bookmark is the last period emitted (``YYYY-MM`` sorts like dates);
a run reads from ``balance_reread_periods`` before it (or the start period) through the current
calendar month, so closed periods are read once and the open ones again until they settle.

A report that fails or times out stops its partition (its bookmark stays at the last complete
period, so nothing is skipped), is logged with the report, period, entity and reportId, and
fails the stream once the other partitions are done: never a silent gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream

from intacct_api.balance_reports import (
    AMOUNT_COLUMNS,
    BALANCE_REPORTS,
    BalanceReport,
    dimension_column,
    parse_balances,
    period_bounds,
    request_body,
)
from intacct_api.decimals import DECIMAL_FORMAT
from intacct_api.errors import IntacctError
from intacct_api.reports import ReportError, ReportRunner
from tap_intacct.report_settings import BalanceOptions, current_period
from tap_intacct.sdk_overrides import SyncHookOverrides
from tap_intacct.writer import flush_held_records

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

    from tap_intacct.tap import TapIntacct

__all__ = ["BALANCE_STREAM_NAMES", "BalanceStream", "balance_streams"]

BALANCE_STREAM_NAMES = frozenset(r.stream for r in BALANCE_REPORTS.values())


class BalanceReportsFailedError(IntacctError):
    """One or more balance reports failed; each is named in the message."""


def _text(nullable: bool = False) -> dict[str, Any]:
    return {"type": ["string", "null"] if nullable else "string"}


def balance_schema(report: BalanceReport, dimensions: Iterable[str]) -> dict[str, Any]:
    """JSON Schema of one balance stream's records."""
    props: dict[str, Any] = {
        "period": {**_text(), "description": "Calendar month YYYY-MM (the replication key)."},
        "period_start": {**_text(), "format": "date"},
        "period_end": {**_text(), "format": "date"},
        "reporting_book": _text(),
        "entity": {**_text(), "description": "Entity id; empty = top level (all entities)."},
        "account_id": _text(),
        "account_name": _text(nullable=True),
    }
    if report.by_dimension:
        for name in dimensions:
            props[dimension_column(name)] = {
                **_text(),
                "description": f"{name} id; empty = lines without a {name}.",
            }
    props["currency"] = _text()
    for amount in AMOUNT_COLUMNS:
        props[amount] = {"type": "string", "format": DECIMAL_FORMAT}
    props["report_id"] = {**_text(nullable=True), "description": "Intacct's reportId."}
    return {
        "type": "object",
        "properties": props,
        "required": list(primary_key(report, dimensions)),
    }


def primary_key(report: BalanceReport, dimensions: Iterable[str]) -> tuple[str, ...]:
    """period, book, entity, account, each dimension id, currency."""
    dims = tuple(dimension_column(d) for d in dimensions) if report.by_dimension else ()
    return ("period", "reporting_book", "entity", "account_id", *dims, "currency")


class BalanceStream(SyncHookOverrides):
    """One balance report as an incremental stream (see the module docstring)."""

    replication_key = "period"
    is_sorted = True
    """Periods are read in ascending order; the bookmark is the last one emitted."""
    check_sorted = False
    """A rerun starts ``balance_reread_periods`` before the bookmark, on purpose."""

    def __init__(self, tap: TapIntacct, report: BalanceReport, options: BalanceOptions) -> None:
        dimensions = options.dimensions if report.by_dimension else ()
        super().__init__(tap, schema=balance_schema(report, dimensions), name=report.stream)
        self.report = report
        self.options = options
        self.dimensions = dimensions
        self.primary_keys = list(primary_key(report, dimensions))
        self.intacct_tap = tap
        self.failures: list[str] = []

    def get_replication_key_signpost(self, context: Context | None = None) -> Any:
        """No signpost: the key is a period, not a timestamp."""
        return None

    @property
    def partitions(self) -> list[dict[str, Any]] | None:
        """One partition per entity: ``balance_entities``, else the tap's ``entities``, else the
        connection's ``entity`` (a header the reports service would ignore, so it becomes the
        body's filter instead of silently reading the top level)."""
        configured = self.intacct_tap.connection.entity
        entities = (
            list(self.options.entities)
            or self.intacct_tap.entity_ids()
            or ([configured] if configured else [])
        )
        return [{"entity": e} for e in entities] if entities else None

    def before_sync(self) -> None:
        """A sync starts with no failed report."""
        self.failures = []

    def after_sync(self) -> None:
        """Fail once every partition ran and the final STATE (bookmarks of the complete
        periods) is written, if any report failed."""
        if self.failures:
            raise BalanceReportsFailedError(
                f"{self.name}: {len(self.failures)} report(s) failed; their partitions stop "
                "at the last complete period and are read again next run: "
                + "; ".join(self.failures)
            )

    def get_records(self, context: Context | None) -> Iterator[dict[str, Any]]:
        """The balances of each period to read, oldest first."""
        try:
            yield from self._read(context)
        finally:
            flush_held_records(self._tap.message_writer)

    def _read(self, context: Context | None) -> Iterator[dict[str, Any]]:
        entity = str((context or {}).get("entity") or "")
        periods = self.options.periods_to_read(self._bookmark(context), current_period())
        runner = ReportRunner(self.intacct_tap.client, self.options.poll)
        book = self.options.reporting_book
        for period in periods:
            name = f"{self.report.key} {period} book {book}" + (
                f" entity {entity}" if entity else ""
            )
            body = request_body(
                self.report,
                period,
                reporting_book=book,
                entity=entity or None,
                dimensions=self.dimensions,
            )
            try:
                output = runner.run(self.report.operation_id, body, name=name)
                rows = list(parse_balances(output.text(), report=name, dimensions=self.dimensions))
            except ReportError as exc:
                self.logger.error("%s (partition stopped before %s)", exc, period)
                self.failures.append(str(exc))
                return
            yield from self._records(rows, period, entity, output.report_id)

    def _bookmark(self, context: Context | None) -> str | None:
        """The last period emitted before this run, from state only.

        Not ``get_starting_replication_key_value``: without state the SDK puts the config's
        ``start_date`` (a timestamp meant for the query streams) there, which is no period.
        """
        state = self.get_context_state(context)
        value = state.get("replication_key_value")
        if not value or state.get("replication_key") != self.replication_key:
            return None
        return str(value)

    def _records(
        self, rows: Iterable[Any], period: str, entity: str, report_id: str
    ) -> Iterator[dict[str, Any]]:
        start, end = period_bounds(period)
        for row in rows:
            record: dict[str, Any] = {
                "period": period,
                "period_start": start.isoformat(),
                "period_end": end.isoformat(),
                "reporting_book": self.options.reporting_book,
                "entity": entity,
                "account_id": row.account_id,
                "account_name": row.account_name,
            }
            for name in self.dimensions:
                record[dimension_column(name)] = row.dimensions.get(name, "")
            record["currency"] = row.currency or ""
            for amount in AMOUNT_COLUMNS:
                record[amount] = getattr(row, amount)
            record["report_id"] = report_id
            yield record


def balance_streams(tap: TapIntacct) -> list[Stream]:
    """The opt-in balance streams the config asks for (none by default)."""
    options = BalanceOptions.from_config(tap.config)
    return [BalanceStream(tap, BALANCE_REPORTS[key], options) for key in options.reports]
