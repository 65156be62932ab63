"""Sinks for target-intacct, generated per Intacct object from the spec registry.

There is no hand-written class per object: :func:`sink_class_for` builds (and caches) one
``BatchSink`` subclass per object the first time a stream maps to it, carrying only the
object's name; everything object-specific (request schema, owner, operations) comes from the
registry through the shared Mutate engine. Streams that map to no object get
:class:`UnknownStreamSink`, which reports every record as an error result instead of crashing.

Traps handled here (singer-sdk notes, section 2):

* the batch size: ``MAX_SIZE_DEFAULT = 500`` plus a ``max_size`` *property* capping
  ``batch_size_rows``/``batch_size`` at 500. A class attribute ``max_size`` would silently
  override ``batch_size_rows``;
* records arrive with ``date``/``datetime`` objects (the SDK parses them); the engine
  serialises them back to Intacct's formats;
* ``_sdc_deleted_at`` would be stripped before our code sees it unless record metadata is
  kept, so ``include_sdc_metadata_properties`` is always on (the engine drops ``_sdc_*``
  fields from request bodies);
* sinks drain in parallel threads: the engine, the shared client and the results writer are
  thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from singer_sdk.sinks import BatchSink

from intacct_api.mutate import MAX_BATCH_SIZE, MutateItem
from intacct_api.mutate_results import ERROR, SKIPPED, MutateResult
from target_intacct.validation import FastRecordValidator

if TYPE_CHECKING:
    from singer_sdk.target_base import Target

    from target_intacct.target import TargetIntacct

__all__ = ["IntacctSink", "UnknownStreamSink", "sink_class_for"]

DELETED_AT = "_sdc_deleted_at"


class IntacctSink(BatchSink):
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
        self._target: TargetIntacct = target  # type: ignore[assignment]
        super().__init__(target, stream_name, schema, key_properties)
        mapping = self._target.stream_mapping(stream_name)
        self.operation: str = mapping.get("operation") or "upsert"
        self.match_on: str | None = mapping.get("match_on")
        self.allow_deletes = bool(self.config.get("allow_deletes", False))

    # -- SDK hooks ---------------------------------------------------------------------

    @property
    def max_size(self) -> int:
        """Records per drain: ``batch_size_rows`` or ``batch_size``, never above 500."""
        wanted = self.batch_size_rows or self.config.get("batch_size") or MAX_BATCH_SIZE
        return max(1, min(int(wanted), MAX_BATCH_SIZE))

    @property
    def include_sdc_metadata_properties(self) -> bool:
        """Always keep ``_sdc_*`` so ``_sdc_deleted_at`` reaches us (dropped before sending)."""
        return True

    def get_validator(self) -> FastRecordValidator:
        """Compiled validation (fastjsonschema), failures reported as results, not raised.

        ``validate_records: false`` skips the schema check but still guards date fields the
        SDK will parse.
        """
        return FastRecordValidator(self.schema, check_schema=bool(self.validate_schema))

    def start_batch(self, context: dict) -> None:
        """Each batch collects Mutate items (record + operation + input line)."""
        context["items"] = []

    def process_record(self, record: dict, context: dict) -> None:
        """Queue the record with its operation; a validation failure is queued as an error."""
        items: list[MutateItem] = context.setdefault("items", [])
        line = self._target.current_line
        index = self._target.next_index(self.stream_name)
        failure = None
        if isinstance(self._validator, FastRecordValidator):
            failure = self._validator.take_failure(record)
        if failure is not None:
            items.append(
                MutateItem(
                    record=_strip_metadata(failure.original),
                    operation=self.operation,
                    index=index,
                    line=line,
                    error=f"line {line}: {failure.message}",
                    error_code="schemaValidation",
                )
            )
            return
        operation = self.operation
        if record.get(DELETED_AT):
            operation = "delete" if self.allow_deletes else "skip-delete"
        items.append(
            MutateItem(
                record=record,
                operation=operation,
                index=index,
                line=line,
                entity=self.config.get("entity") or None,
            )
        )

    def process_batch(self, context: dict) -> None:
        """Send the batch through the engine and record one result per record, in order."""
        items: list[MutateItem] = context.get("items", [])
        if not items:
            return
        skipped = [i for i in items if i.operation == "skip-delete"]
        to_write = [i for i in items if i.operation != "skip-delete"]
        results: list[MutateResult] = []
        if to_write:
            engine = self._target.engine
            results.extend(engine.mutate_items(self.object_name, to_write, match_on=self.match_on))
        results.extend(
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
        )
        results.sort(key=lambda r: r.index)
        self._target.record_results(self.stream_name, results)


class UnknownStreamSink(IntacctSink):
    """A stream with no Intacct object: every record becomes an error result."""

    def process_batch(self, context: dict) -> None:
        """Report each record; nothing is sent."""
        items: list[MutateItem] = context.get("items", [])
        reason = self._target.unknown_stream_reason(self.stream_name)
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
        self._target.record_results(self.stream_name, results)


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
