"""The tap's stream classes: one generic query stream, instantiated once per Intacct object.

No per-object classes exist: :mod:`tap_intacct.discovery` produces a
:class:`~tap_intacct.discovery.StreamDefinition` per object (or configured operation) and the
tap instantiates :class:`QueryStream` / :class:`OperationStream` with it.

The streams subclass singer-sdk's plain ``Stream``, not ``RESTStream``: the SDK's REST layer is
bound to ``requests`` and re-parses every page, whereas all our HTTP goes through the shared
``IntacctClient`` (retries, auth, errors exist once) and all paging through the shared
:class:`~intacct_api.pager.QueryPager`. Records are yielded as pages arrive (memory flat).

Speed (docs/singer-sdk-notes.md §7: stock emission is ~20x slower than a bare loop):

* ``TYPE_CONFORMANCE_LEVEL = NONE``: query results are JSON-native already and unknown keys
  are dropped by the :class:`~intacct_api.records.RowPlan`, which reads only planned keys.
* Records are built from the *selected* fields only (the plan comes from the selection mask and
  only those fields are requested), so the SDK's per-record deselect walk
  (``pop_deselected_record_properties``, ~40% of what is left) has nothing to do.
  :meth:`IntacctStream._generate_record_messages` therefore skips it. That method is private
  SDK API: ``tests/tap/test_tap_sync.py`` pins its signature and checks that deselected fields
  still never reach the output, so an SDK upgrade that changes it fails loudly.
* ``time_extracted`` is taken once per page (the moment the page arrived), not per record.
* Per record, the SDK's loop still runs (record limit, state, metrics), but three private
  steps take a direct path when nothing needs them (each falls back to the SDK otherwise):
  :meth:`IntacctStream._write_record_message` encodes the record straight into the writer's
  buffer between a pre-encoded head and tail (no ``RecordMessage``, no ``to_dict``);
  :meth:`IntacctStream._process_record` skips child-context work for a stream without
  children; :meth:`IntacctStream._increment_stream_state` sets the bookmark directly.
  ``tests/tap/test_tap_sync.py`` pins those SDK methods and checks that the output, STATE
  messages included, is the same message for message as through the SDK's own path.
* Rows become records through one generated function per plan (:class:`RowPlan`), and the
  pager fetches page *k+1* in a background thread while page *k* is converted and written
  (:meth:`QueryPager.prefetched`: one page ahead at most; rows are freed as they are
  converted, so memory stays under two pages).

With ``parallel_slices`` > 1 a query stream reads each partition in slices at once
(:mod:`tap_intacct.slices`): unordered across slices, so the stream is then unsorted, with each
slice's progress kept in the partition state so a killed run resumes without loss.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from singer_sdk import metrics
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context

from intacct_api.client import DEFAULT_ENTITY
from intacct_api.pager import KEY_FIELD, QueryPager, ReplicationFieldRefusedError
from intacct_api.records import RowPlan, SchemaPruner, field_paths
from tap_intacct.columns import DELETED_AT, ENTITY, MODIFIED_AT, SYNTHETIC_COLUMNS
from tap_intacct.deletes import (
    AuditRefusedError,
    audit_deletions,
    decode_keys,
    encode_keys,
    scan_keys,
)
from tap_intacct.discovery import StreamDefinition
from tap_intacct.progress import report_progress
from tap_intacct.sdk_overrides import StreamOverrides
from tap_intacct.slices import (
    SLICES_STATE,
    SlicedReader,
    SlicePlan,
    key_edges,
    slicing_range,
    time_edges,
)
from tap_intacct.writer import RecordBufferedWriter, flush_held_records

if TYPE_CHECKING:
    from tap_intacct.tap import TapIntacct

__all__ = ["IntacctStream", "OperationStream", "QueryStream", "StreamStats"]

_KEYSCAN_STATE = "keyscan"
_AUDIT_STATE = "audit_deletes_since"
_INCREMENTAL_REFUSED_STATE = "incremental_refused"
"""Partition state key set when the query service refused the replication field."""


def utc_iso(moment: dt.datetime) -> str:
    """Intacct's timestamp format: UTC, whole seconds, ``Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class StreamStats:
    """What the end-of-stream summary reports."""

    records: int = 0
    pages: int = 0
    query_calls: int = 0
    deleted: int = 0
    dropped_fields: list[str] = field(default_factory=list)
    seconds: float = 0.0
    partitions: int = 0


class IntacctStream(StreamOverrides):
    """Shared behaviour: definition wiring, fast emission (``sdk_overrides``), the summary."""

    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: TapIntacct, definition: StreamDefinition) -> None:
        super().__init__(tap, schema=definition.schema, name=definition.name)
        self.definition = definition
        self.primary_keys = list(definition.key_properties)
        self.replication_key = definition.replication_key
        self.intacct_tap: TapIntacct = tap
        self.stats = StreamStats()
        self._extracted_at: dt.datetime = dt.datetime.now(dt.UTC)
        self._fast_writer: RecordBufferedWriter | None = None
        self._frame_at: dt.datetime | None = None
        self._frame: tuple[bytes, bytes] = (b"", b"")
        self._fast_state = False
        self._state_for: Context | None = None
        self._state_dict: dict[str, Any] | None = None
        self._full_table = False
        """This partition is read in full: its query refuses the replication field."""
        self._partial_read = False
        """This partition's sliced read resumed an interrupted one: not every key is seen."""

    # -- ordering and state -------------------------------------------------------------------

    @property
    def is_sorted(self) -> bool:
        """Keyset paging returns rows in ascending ``_modified_at``: state is resumable."""
        return self.replication_key is not None

    @property
    def check_sorted(self) -> bool:
        """The look-back window re-reads rows older than the bookmark on purpose."""
        return False

    def get_replication_key_signpost(self, context: Context | None = None) -> Any:
        """No signpost: keyset paging is complete and ordered, nothing needs capping."""
        return None

    # -- reading ---------------------------------------------------------------------------------

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """The records of one partition (:meth:`_read`); the output is flushed when it ends.

        The writer holds RECORD lines back until the next non-RECORD message, and the SDK
        does not always write one after a stream's last records (a full-table stream whose
        state did not change), so the end of a read, normal or not, writes them out.
        """
        self._frame_at = None
        self._fast_writer = self._fast_record_writer()
        self._state_for = self._state_dict = None
        self._fast_state = bool(
            self.replication_key
            and self.replication_method == "INCREMENTAL"
            and self.is_sorted
            and not self.check_sorted
            and self.state_partitioning_keys is None
        )
        try:
            yield from self._read(context)
        finally:
            flush_held_records(self._tap.message_writer)

    def _read(self, context: Context | None) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    # -- summary --------------------------------------------------------------------------------

    def log_sync_costs(self) -> None:
        """One INFO line per stream at the end of the run (the SDK calls this once)."""
        if not self.selected:
            return
        s = self.stats
        dropped = f", dropped fields: {', '.join(s.dropped_fields)}" if s.dropped_fields else ""
        deleted = f", {s.deleted} deletions" if s.deleted else ""
        self.logger.info(
            "Summary for '%s': %d records in %.1f s, %d pages, %d query calls, %d partition(s)%s%s",
            self.name,
            s.records,
            s.seconds,
            s.pages,
            s.query_calls,
            s.partitions,
            deleted,
            dropped,
        )

    def _selected(self, name: str) -> bool:
        return bool(self.mask[("properties", name)])


@dataclass(frozen=True)
class _Ownership:
    """The ownership filter of one entity partition (see :meth:`QueryStream._ownership`)."""

    entity: str
    keeps_shared: bool
    field: str = "entity.id"

    def records(
        self, page: list[dict[str, Any]], convert: Any, shared: Any
    ) -> Iterator[dict[str, Any]]:
        """The page's records this partition owns; ``shared`` converts a shared row (the
        partition's plan with ``_entity`` null), None where shared rows belong elsewhere."""
        for row in page:
            owner = row.get(self.field)
            if owner is None:
                if shared is not None:
                    yield shared(row)
            elif str(owner) == self.entity:
                yield convert(row)


class _PageRecords:
    """A page of rows -> the partition's records: ownership filter, plans for dropped fields,
    the keys kept for keyscan deletes. Rows are freed as they are converted."""

    def __init__(
        self,
        stream: QueryStream,
        entity: str | None,
        plan: RowPlan,
        owner: _Ownership | None,
        seen: set[str] | None,
    ) -> None:
        self.stream = stream
        self.entity = entity
        self.fields = list(plan.fields)
        self.plans: dict[tuple[str, ...], RowPlan] = {(): plan}
        self.shared: dict[tuple[str, ...], Any] = {}
        self.owner = owner
        self.seen = seen

    def records(
        self, page: list[dict[str, Any]], dropped: tuple[str, ...]
    ) -> Iterator[dict[str, Any]]:
        plan = self.plans.get(dropped)
        if plan is None:
            fields = [f for f in self.fields if f not in dropped]
            plan = self.plans[dropped] = self.stream.row_plan(self.entity, fields)
        if self.seen is not None:
            self.seen.update(str(r["key"]) for r in page if r.get("key") is not None)
        owner = self.owner
        if owner is not None:  # each record once: see QueryStream._ownership
            if dropped not in self.shared:  # the shared rows' plan follows `plan`
                self.shared[dropped] = (
                    self.stream.row_plan(None, plan.fields).convert if owner.keeps_shared else None
                )
            yield from owner.records(page, plan.convert, self.shared[dropped])
            return
        convert = plan.convert
        # Rows are freed as they are converted, while the next page arrives.
        page.reverse()
        pop = page.pop
        while page:
            yield convert(pop())


class QueryStream(IntacctStream):
    """One Intacct object, read through the query service with keyset paging."""

    @property
    def partitions(self) -> list[dict[str, Any]] | None:
        """One partition per configured entity (state per entity); None = top level only."""
        entities = self.intacct_tap.entity_ids()
        return None if entities is None else [{ENTITY: e} for e in entities]

    # -- building the query and the records ---------------------------------------------------

    def selected_fields(self) -> list[str]:
        """Dotted query fields of the selected properties (never arrays, never our columns)."""
        fields = field_paths(self.schema, selected=self.mask.__getitem__, exclude=SYNTHETIC_COLUMNS)
        if "key" in (self.schema.get("properties") or {}) and "key" not in fields:
            fields.insert(0, "key")
        return fields

    def row_plan(self, entity: str | None, fields: Iterable[str] | None = None) -> RowPlan:
        """The compiled row -> record conversion for this stream and partition."""
        aliases: dict[str, str] = {}
        if self.definition.timestamp_field and self._selected(MODIFIED_AT):
            aliases[MODIFIED_AT] = self.definition.timestamp_field
        constants: dict[str, Any] = {}
        properties = self.schema.get("properties") or {}
        if ENTITY in properties and self._selected(ENTITY):
            constants[ENTITY] = entity
        if DELETED_AT in properties and self._selected(DELETED_AT):
            constants[DELETED_AT] = None
        return RowPlan(
            self.selected_fields() if fields is None else fields,
            aliases=aliases,
            constants=constants,
            kinds=self.definition.field_kinds,
        )

    def start_filters(self, context: Context | None) -> list[dict[str, Any]]:
        """``$gte`` on the timestamp from bookmark minus look-back (or ``start_date``)."""
        ts_field = self.definition.timestamp_field
        if not ts_field or self.replication_method != "INCREMENTAL":
            return []
        start = self.get_starting_timestamp(context)
        if start is None:
            return []
        state = self.get_context_state(context)
        bookmark = state.get("replication_key_value")
        if bookmark and state.get("replication_key") == self.replication_key:
            start_date = self.intacct_tap.options.start_date
            start = start - self.intacct_tap.options.lookback
            if start_date:
                floor = self._parse_datetime(start_date)
                start = max(start, floor)
        return [{"$gte": {ts_field: utc_iso(start)}}]

    # -- the read -------------------------------------------------------------------------------

    def _read(self, context: Context | None) -> Iterator[dict[str, Any]]:
        """Records of one partition, page by page; then deletions if configured.

        When the query service refuses the replication field (``audit.modifiedDateTime``) for
        this object, the partition is read in full on ``key`` instead, with one warning, and
        the refusal is remembered in the partition's state so later runs read it in full
        straight away (an INFO line says so) instead of failing the run.
        """
        tap = self.intacct_tap
        options = tap.options
        object_name = self.definition.object_name
        assert object_name is not None
        if context:
            entity_arg: Any = context[ENTITY]
            entity: str | None = context[ENTITY]
        else:
            entity_arg, entity = DEFAULT_ENTITY, tap.connection.entity
        state = self.get_context_state(context)
        ts_field = self.definition.timestamp_field
        self._full_table = bool(ts_field and state.get(_INCREMENTAL_REFUSED_STATE))
        if self._full_table:
            self.logger.info(
                "%s: read in full (the query service refused %s in an earlier run; remove %r "
                "from the state to try incremental reads again)",
                self.name,
                ts_field,
                _INCREMENTAL_REFUSED_STATE,
            )
        seen: set[str] = set()
        self.stats.partitions += 1
        try:
            yield from self._read_pages(context, entity_arg, entity, seen)
        except ReplicationFieldRefusedError as refused:
            if self._full_table:
                raise
            self._full_table = True
            state[_INCREMENTAL_REFUSED_STATE] = {
                "field": refused.field,
                "error": refused.error.error_id or str(refused.error.status),
            }
            self.logger.warning(
                "%s: the query service refuses %s for %s (%s); this stream is read in full "
                "(FULL_TABLE on key) from now on, and that is remembered in the state",
                self.name,
                refused.field,
                object_name,
                refused.error,
            )
            seen.clear()
            yield from self._read_pages(context, entity_arg, entity, seen)
        keep_keys = (
            options.deletes == "keyscan"
            and (self._full_table or not self.start_filters(context))
            and not self._partial_read
        )
        if options.deletes == "keyscan":
            yield from self._keyscan_deletions(
                context, entity_arg, entity, seen if keep_keys else None
            )
        elif options.deletes == "audit":
            yield from self._audit_deletions(context, entity_arg, entity)

    def _read_pages(
        self, context: Context | None, entity_arg: Any, entity: str | None, seen: set[str]
    ) -> Iterator[dict[str, Any]]:
        """The records of one query over the partition (incremental, or in full on key).

        With ``parallel_slices`` > 1 the query is split into slices read at once
        (:mod:`tap_intacct.slices`); otherwise one keyset read, one page prefetched.
        """
        tap = self.intacct_tap
        options = tap.options
        object_name = self.definition.object_name
        assert object_name is not None
        plan = self.row_plan(entity)
        ts_field = self.definition.timestamp_field
        filters = [] if self._full_table else self.start_filters(context)
        fields = plan.requested_fields()
        if self._full_table and ts_field:
            fields = [f for f in fields if f != ts_field]
            plan = self.row_plan(entity, [f for f in plan.fields if f != ts_field])
        owner = self._ownership(context)
        if owner is not None and owner.field not in fields:
            fields = [*fields, owner.field]
        timestamp_field = None if self._full_table else ts_field
        started = time.monotonic()
        slices = self._slice_plan(context, entity_arg, filters) if self.parallel_reads else None
        self._partial_read = bool(slices and slices.started)
        keep_keys = options.deletes == "keyscan" and not filters and not self._partial_read
        emit = _PageRecords(self, entity, plan, owner, seen if keep_keys else None)

        def make_pager(filters: list[dict[str, Any]], expression: str | None = None) -> QueryPager:
            return QueryPager(
                tap.client,
                object_name,
                fields,
                filters=filters,
                filter_expression=expression,
                page_size=options.page_size,
                include_private=options.include_private,
                entity=entity_arg,
                timestamp_field=timestamp_field,
                typed_rows=True,  # rows decoded into structs; the RowPlan reads their slots
            )

        if slices is not None:
            yield from self._read_slices(context, slices, make_pager, emit, started)
            return
        pager = make_pager(filters)
        with metrics.http_request_counter(self.name, "/services/core/query") as requests:
            requests.with_context(context)
            try:
                with contextlib.closing(pager.prefetched()) as pages:
                    for page, dropped in pages:
                        gc.collect()  # an answer's body waits in an httpx cycle otherwise
                        self._page_arrived(len(page), pager.pages)
                        yield from emit.records(page, dropped)
            finally:
                requests.increment(pager.calls)
                self._count_read(pager.pages, pager.calls, pager.dropped_fields, started)

    def _page_arrived(self, rows: int, pages_so_far: int) -> None:
        self._extracted_at = dt.datetime.now(dt.UTC)
        self.stats.records += rows
        report_progress(self, self.stats.pages + pages_so_far)

    def _count_read(self, pages: int, calls: int, dropped: Iterable[str], started: float) -> None:
        self.stats.pages += pages
        self.stats.query_calls += calls
        for name in dropped:
            if name not in self.stats.dropped_fields:
                self.stats.dropped_fields.append(name)
        self.stats.seconds += time.monotonic() - started

    # -- parallel partitioned reads (parallel_slices > 1) -------------------------------------

    @property
    def parallel_reads(self) -> bool:
        """``parallel_slices`` > 1: partitions are read in slices at once, records unordered."""
        tap = getattr(self, "intacct_tap", None)
        return tap is not None and tap.options.parallel_slices > 1

    @property
    def is_sorted(self) -> bool:
        """Sorted (resumable bookmark per record) unless slices are read at once."""
        return self.replication_key is not None and not self.parallel_reads

    @property
    def check_sorted(self) -> bool:
        """Sliced reads are unsorted: True makes the SDK keep the *largest* value read (its
        progress marker) rather than the last; sorted reads keep False (look-back rows)."""
        return self.parallel_reads

    def _slice_plan(
        self, context: Context | None, entity_arg: Any, filters: list[dict[str, Any]]
    ) -> SlicePlan | None:
        """The slices of this partition's read: an interrupted run's from the state (finished
        slices skipped), or new ones from the range of the slicing field; None = read
        sequentially (nothing to split)."""
        tap = self.intacct_tap
        state = self.get_context_state(context)
        ts_field = self.definition.timestamp_field
        field = KEY_FIELD if self._full_table or not ts_field else ts_field
        resumed = SlicePlan.from_state(state.get(SLICES_STATE), field)
        if resumed is not None and resumed.pending():
            self.logger.info(
                "%s: resuming an interrupted parallel read: %d of %d slices left",
                self.name,
                len(resumed.pending()),
                len(resumed.slices),
            )
            return resumed
        state.pop(SLICES_STATE, None)
        lower = filters[0]["$gte"][field] if filters and field == ts_field else None
        bounds = slicing_range(
            tap.client,
            self.definition.object_name or "",
            field,
            lower=lower,
            entity=entity_arg,
            include_private=tap.options.include_private,
            timestamp_field=None if self._full_table else ts_field,
        )
        self.stats.query_calls += 2
        if bounds is None:
            return None
        low, high, total = bounds
        page_size = tap.options.page_size
        if total is not None and total <= page_size:
            return None  # one page: nothing to read at once
        n = tap.options.parallel_slices
        if total is not None:  # no more slices than pages
            n = min(n, -(-total // page_size))
        edges = time_edges(low, high, n) if field == ts_field else key_edges(low, high, n)
        if not edges:
            return None
        return SlicePlan.from_edges(field, lower, edges, nulls=lower is None and field != KEY_FIELD)

    def _read_slices(
        self,
        context: Context | None,
        slices: SlicePlan,
        make_pager: Any,
        emit: _PageRecords,
        started: float,
    ) -> Iterator[dict[str, Any]]:
        """The slices' pages as they arrive; progress kept in the partition state per page."""
        tap = self.intacct_tap
        state = self.get_context_state(context)
        bookmarked = bool(
            self.replication_method == "INCREMENTAL"
            and self.replication_key
            and slices.field == self.definition.timestamp_field
        )
        original = state.get("replication_key_value")

        def save() -> None:
            state[SLICES_STATE] = slices.to_state()
            if bookmarked:
                self._set_bookmark(state, slices.watermark() or original)

        reader = SlicedReader(
            slices.pending(),
            lambda s: make_pager(*slices.filters(s)),
            workers=tap.connection.max_concurrency,
        )
        self.logger.info(
            "%s: reading %d slices of %s at once (parallel_slices)",
            self.name,
            len(reader.slices),
            slices.field,
        )
        save()
        with metrics.http_request_counter(self.name, "/services/core/query") as requests:
            requests.with_context(context)
            try:
                with contextlib.closing(reader.pages()) as pages:
                    for piece, page, dropped in pages:
                        gc.collect()
                        if page is None:
                            piece.done = True
                        else:
                            self._page_arrived(len(page), reader.pages_read)
                            last = page[-1].get(slices.field)
                            yield from emit.records(page, dropped)
                            if last is not None:
                                piece.resume = last
                        save()
            finally:
                requests.increment(reader.calls + 2)
                self._count_read(reader.pages_read, reader.calls, reader.dropped_fields(), started)
        state.pop(SLICES_STATE, None)
        if bookmarked:
            self._set_bookmark(state, original)

    def _set_bookmark(self, state: dict[str, Any], value: Any) -> None:
        if value is None:
            state.pop("replication_key_value", None)
            return
        state["replication_key"] = self.replication_key
        state["replication_key_value"] = value

    def _ownership(self, context: Context | None) -> _Ownership | None:
        """Which rows an entity partition emits, so each record appears once.

        A query in entity E returns E's private records *and* every shared (top-level)
        record, so with several entity partitions each shared record would come back once per
        entity. The rule: partition E emits the records E owns (``entity.id == E``); the
        first partition also emits the shared ones, with ``_entity`` null (the top level owns
        them). A record of an object without an ``entity`` member cannot say who owns it, so
        such an object is not filtered: each partition emits what it reads, with its entity
        (a shared record then comes once per entity, with the same ``key``; filtering it could
        lose a record private to a later entity). Deletion announcements are not filtered.
        """
        partitions = self.partitions
        if not context or not partitions or len(partitions) < 2:
            return None
        if "entity" not in (self.definition.schema.get("properties") or {}):
            return None
        return _Ownership(
            entity=str(context[ENTITY]),
            keeps_shared=partitions[0].get(ENTITY) == context[ENTITY],
        )

    # -- deletes --------------------------------------------------------------------------------

    def _deletion(
        self, key: str, deleted_at: str | None, entity: str | None, bookmark: Any
    ) -> dict:
        record: dict[str, Any] = {"key": key, DELETED_AT: deleted_at, ENTITY: entity}
        if self.definition.timestamp_field and self._selected(MODIFIED_AT):
            # The bookmark in effect: keeps the (sorted) state where it is.
            record[MODIFIED_AT] = bookmark
        self.stats.deleted += 1
        return record

    def _keyscan_deletions(
        self, context: Context | None, entity_arg: Any, entity: str | None, seen: set[str] | None
    ) -> Iterator[dict[str, Any]]:
        tap = self.intacct_tap
        state = self.get_context_state(context)
        if seen is None:
            seen, pager = scan_keys(
                tap.client,
                self.definition.object_name or "",
                entity=entity_arg,
                include_private=tap.options.include_private,
            )
            self.stats.query_calls += pager.calls
            self.stats.pages += pager.pages
        previous = decode_keys(state.get(_KEYSCAN_STATE))
        if _KEYSCAN_STATE in state:
            now = utc_iso(dt.datetime.now(dt.UTC))
            bookmark = state.get("replication_key_value")
            for key in sorted(previous - seen, key=_key_order):
                yield self._deletion(key, now, entity, bookmark)
        state[_KEYSCAN_STATE] = encode_keys(seen)

    def _audit_deletions(
        self, context: Context | None, entity_arg: Any, entity: str | None
    ) -> Iterator[dict[str, Any]]:
        tap = self.intacct_tap
        if tap.audit_refused:
            return
        state = self.get_context_state(context)
        since = state.get(_AUDIT_STATE) or tap.options.start_date
        newest = since
        bookmark = state.get("replication_key_value")
        try:
            for key, deleted_at in audit_deletions(
                tap.client,
                self.definition.object_name or "",
                since=since,
                entity=entity_arg,
                include_private=tap.options.include_private,
            ):
                if deleted_at and (newest is None or deleted_at > newest):
                    newest = deleted_at
                yield self._deletion(key, deleted_at, entity, bookmark)
        except AuditRefusedError as refused:
            tap.audit_refused = True
            self.logger.warning(
                "deletes: audit — %s cannot be read with these credentials (%s). Deleted "
                "records are NOT being detected; grant audit-trail permission or use "
                "deletes: keyscan.",
                "company-config/audit-history",
                refused.error,
            )
            return
        if newest:
            state[_AUDIT_STATE] = newest


def _key_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


class OperationStream(IntacctStream):
    """A configured ``{name, operation_id, parameters}``: Query by operationId.

    Follows ``ia::meta.next`` when the operation declares a ``start`` parameter (list
    operations); records are pruned to the response schema.
    """

    def _read(self, context: Context | None) -> Iterator[dict[str, Any]]:
        """Call the operation (page by page when it pages) and yield ``ia::result`` items."""
        spec = self.definition.operation
        assert spec is not None
        tap = self.intacct_tap
        op = tap.registry.operation(spec.operation_id)
        pages_by_start = any(p.name == "start" for p in op.parameters)
        params: dict[str, Any] = dict(spec.parameters)
        prune = SchemaPruner(self.schema)
        entity = tap.connection.entity
        started = time.monotonic()
        with metrics.http_request_counter(self.name, op.path) as requests:
            while True:
                response = tap.client.call(spec.operation_id, query=params, body=spec.body)
                requests.increment()
                self.stats.query_calls += 1
                self.stats.pages += 1
                self._extracted_at = dt.datetime.now(dt.UTC)
                payload = response.json()
                result = payload.get("ia::result") if isinstance(payload, Mapping) else None
                items = result if isinstance(result, list) else [result] if result else []
                for item in items:
                    record = prune(item)
                    if isinstance(record, dict):
                        record[ENTITY] = entity
                        self.stats.records += 1
                        yield record
                meta = payload.get("ia::meta") if isinstance(payload, Mapping) else None
                nxt = meta.get("next") if isinstance(meta, Mapping) else None
                if not (pages_by_start and nxt and items):
                    break
                params["start"] = nxt
        self.stats.seconds += time.monotonic() - started
        self.stats.partitions += 1
