"""Sinks for target-intacct, generated per Intacct object from the spec registry.

There is no hand-written class per object: :func:`sink_class_for` builds (and caches) one
``BatchSink`` subclass per object the first time a stream maps to it, carrying only the
object's name; everything object-specific (request schema, owner, operations) comes from the
registry through the shared Mutate engine. Streams that map to no object get
:class:`UnknownStreamSink`, which reports every record as an error result instead of crashing.

Traps handled here (docs/singer-sdk-notes.md §2):

* the batch size: ``MAX_SIZE_DEFAULT = 500`` plus a ``max_size`` *property* capping
  ``batch_size_rows``/``batch_size`` at 500. A class attribute ``max_size`` would silently
  override ``batch_size_rows``;
* records arrive with ``date``/``datetime`` objects (the SDK parses them); the engine
  serialises them back to Intacct's formats;
* a drain plans its batch (validation) and hands the *sending* to the result pipeline
  (``target_intacct.pipeline``): reading and validating the next batch overlaps the previous
  one's request; results are written in order, and before any STATE.

The overrides of the SDK's private per-record methods (metadata stamping, timestamp parsing)
live in ``target_intacct.sdk_overrides`` with every other SDK override.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from intacct_api.bulk import MAX_RECORDS_PER_JOB
from intacct_api.columns import DELETED_AT
from intacct_api.errors import IntacctError
from intacct_api.mutate import MAX_BATCH_SIZE, MutateItem, MutatePlan
from intacct_api.mutate_results import ERROR, SKIPPED, MutateResult
from target_intacct.context import WriteContext
from target_intacct.sdk_overrides import SinkOverrides
from target_intacct.validation import FastRecordValidator

if TYPE_CHECKING:
    from singer_sdk.target_base import Target


__all__ = ["IntacctSink", "UnknownStreamSink", "sink_class_for"]

_SKIPPED_DELETE = "skipped-delete"
"""A record announcing a delete while ``allow_deletes`` is off: reported ``skipped`` by the sink
and never handed to the engine (so it is not one of the engine's operations)."""


class IntacctSink(SinkOverrides):
    """Writes a stream's records to one Intacct object through the Mutate engine."""

    MAX_SIZE_DEFAULT = MAX_BATCH_SIZE
    object_name: ClassVar[str] = ""

    def __init__(
        self,
        target: Target,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        self._ctx: WriteContext = target.write_context  # type: ignore[attr-defined]
        super().__init__(target, stream_name, schema, key_properties)
        mapping = self._ctx.mapping(stream_name)
        self.operation: str = mapping.get("operation") or "upsert"
        self.match_on: str | None = mapping.get("match_on")
        self.allow_deletes = self._ctx.allow_deletes
        self._entity: str | None = self._ctx.entity
        wanted = self.batch_size_rows or self._ctx.batch_size or MAX_BATCH_SIZE
        self._max_size = max(1, min(int(wanted), MAX_BATCH_SIZE))
        # bulk jobs: with write_mode bulk every drain, with auto the drains after the stream
        # passed bulk_threshold records (below it, auto is batch: same requests, STATE still
        # mid-load), are held here and sent as jobs at 100,000 records and at end of input
        engine = self._ctx.engine
        self._write_mode = engine.write_mode
        self._bulk = self._write_mode == "bulk"
        self._records_seen = 0
        self._held: list[tuple[MutatePlan, list[MutateResult], bool]] = []
        self._held_records = 0
        self.prepare_timestamp_plan()

    # -- SDK hooks ---------------------------------------------------------------------

    @property
    def max_size(self) -> int:
        """Records per drain: ``batch_size_rows`` or ``batch_size``, never above 500."""
        return self._max_size

    def get_validator(self) -> FastRecordValidator:
        """Compiled validation (fastjsonschema), failures reported as results, not raised.

        ``validate_records: false`` skips the schema check but still guards date fields the
        SDK will parse.
        """
        return FastRecordValidator(
            self.schema,
            check_schema=bool(self.validate_schema),
            checked_downstream=self._request_checked_properties(),
        )

    def _request_checked_properties(self) -> frozenset[str]:
        """Top-level properties the engine validates against the request schema whatever
        the operation (writable on create *and* update), so the stream check can skip them."""
        if not self.object_name:
            return frozenset()
        engine = self._ctx.engine
        try:
            info = engine.registry.object(self.object_name)
        except IntacctError:
            return frozenset()
        via_owner = info.owner is not None
        found: frozenset[str] | None = None
        for operation in ("create", "update"):
            plan = engine.preparer(info, operation, via_owner=via_owner).plan
            writable = frozenset(
                name
                for name, sub in (plan.properties or {}).items()
                if not sub.read_only and not name.startswith("_") and name != "key"
            )
            found = writable if found is None else found & writable
        if via_owner and found and info.owner_reference:  # read, not validated, by the engine
            found = found - {info.owner_reference}
        return found or frozenset()

    def start_batch(self, context: dict) -> None:
        """Each batch collects Mutate items (record + operation + input line)."""
        context["items"] = []

    def process_record(self, record: dict, context: dict) -> None:
        """Queue the record with its operation; a validation failure is queued as an error."""
        items: list[MutateItem] = context.setdefault("items", [])
        line = self._ctx.current_line()
        index = self._ctx.next_index(self.stream_name)
        failure = None
        validator = self._validator
        if isinstance(validator, FastRecordValidator) and validator.has_failures:
            failure = validator.take_failure(record)
        if failure is not None:
            items.append(
                MutateItem(
                    record=_strip_metadata(failure.original),
                    operation=self.operation,
                    index=index,
                    line=line,
                    error=f"line {line}, record {index + 1}: {failure.message}",
                    error_code="schemaValidation",
                )
            )
            return
        operation = self.operation
        if record.get(DELETED_AT):
            operation = "delete" if self.allow_deletes else _SKIPPED_DELETE
        items.append(
            MutateItem(
                record=record,
                operation=operation,
                index=index,
                line=line,
                entity=self._entity,
            )
        )

    def process_batch(self, context: dict) -> None:
        """Plan (validate) the batch here, send it in the background; results follow in order.

        The batch is the drain's records exactly as before (deterministic boundaries, so the
        same input gives the same requests and Idempotency-Keys); only the wait for the
        answer moves off the reading thread (``target_intacct.pipeline``).
        """
        items: list[MutateItem] = context.get("items", [])
        if not items:
            return
        skipped = [i for i in items if i.operation == _SKIPPED_DELETE]
        to_write = [i for i in items if i.operation != _SKIPPED_DELETE]
        engine = self._ctx.engine
        plan = engine.plan_items(self.object_name, to_write, match_on=self.match_on)
        skipped_results = [
            MutateResult(
                index=i.index,
                line=i.line,
                operation="delete",
                object=self.object_name,
                status=SKIPPED,
                request=_strip_metadata(i.record),
                error="record carries _sdc_deleted_at but allow_deletes is false: not deleted",
                error_code="deleteNotAllowed",
            )
            for i in skipped
        ]

        # Only creates and deletes: no batch of this stream depends on another one.
        independent = all(i.operation in {"create", "delete"} for i in to_write)
        self._records_seen += len(items)
        if self._write_mode == "auto" and self._records_seen > engine.bulk_threshold:
            self._bulk = True  # auto: the stream outgrew the threshold; the rest goes by bulk
        if not self._bulk:
            self._submit_batch(plan, skipped_results, independent)
            return
        self._held.append((plan, skipped_results, independent))
        self._held_records += len(items)
        if self._held_records >= MAX_RECORDS_PER_JOB:
            self._send_held()

    def _submit_batch(
        self, plan: MutatePlan, skipped_results: list[MutateResult], independent: bool
    ) -> None:
        """Hand one planned drain to the result pipeline as batch requests."""
        engine = self._ctx.engine

        def send() -> list[MutateResult]:
            results = engine.run_plan(plan) if plan.size else []
            if skipped_results:
                results.extend(skipped_results)
                results.sort(key=lambda r: r.index)
            return results

        # ordered batches (upsert, update: a later one may depend on an earlier one) go one at
        # a time per sink; creates and deletes do not depend on each other and may overlap
        self._ctx.submit(None if independent else id(self), self.stream_name, send, _touched(plan))

    def _send_held(self) -> None:
        """Send the held drains as bulk jobs.

        The jobs run as one pipeline entry, after every earlier batch of this sink
        (``touches=None``), so results stay in input order and STATE waits for them.
        """
        held, self._held, self._held_records = self._held, [], 0
        if not held:
            return
        engine = self._ctx.engine
        plans = [plan for plan, _, _ in held if plan.size]
        skipped = [r for _, skipped_results, _ in held for r in skipped_results]

        def send() -> list[MutateResult]:
            results = engine.run_bulk(plans) if plans else []
            if skipped:
                results.extend(skipped)
                results.sort(key=lambda r: r.index)
            return results

        self._ctx.submit(id(self), self.stream_name, send, None)

    def clean_up(self) -> None:
        """End of input: send the records still held for a bulk job before the SDK's own
        clean-up."""
        self._send_held()
        super().clean_up()


class UnknownStreamSink(IntacctSink):
    """A stream with no Intacct object: every record becomes an error result."""

    def process_batch(self, context: dict) -> None:
        """Report each record; nothing is sent."""
        items: list[MutateItem] = context.get("items", [])
        reason = self._ctx.unknown_reason(self.stream_name)
        results = [
            MutateResult(
                index=i.index,
                line=i.line,
                operation=i.operation,
                object="",
                status=ERROR,
                request=_strip_metadata(i.record),
                error=f"line {i.line}: {i.error or reason}",
                error_code=i.error_code or "unknownStream",
            )
            for i in items
        ]
        self._ctx.record(self.stream_name, results)


def _touched(plan: MutatePlan) -> frozenset[Any]:
    """The records a planned batch writes: natural keys (an upsert's look-up) and keys."""
    touched: set[Any] = set()
    for task in plan.tasks:
        for prepared in task.items:
            if prepared.key is not None:
                touched.add(("key", prepared.key))
            if prepared.match_value is not None:
                touched.add(("match", str(prepared.match_value)))
    return frozenset(touched)


def _strip_metadata(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not k.startswith("_sdc_")}


_GENERATED: dict[str, type[IntacctSink]] = {}
_GENERATED_LOCK = threading.Lock()


def sink_class_for(object_name: str) -> type[IntacctSink]:
    """The sink class for one Intacct object, generated on first use and cached."""
    with _GENERATED_LOCK:
        cls = _GENERATED.get(object_name)
        if cls is None:
            camel = "".join(part.capitalize() for part in object_name.replace("/", "-").split("-"))
            cls = type(
                f"{camel}Sink",
                (IntacctSink,),
                {
                    "object_name": object_name,
                    "__doc__": f"Writes records to Intacct's {object_name} (generated).",
                    "__module__": __name__,
                },
            )
            _GENERATED[object_name] = cls
        return cls
