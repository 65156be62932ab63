"""target-intacct: load Singer streams into Sage Intacct through the shared Mutate engine.

A thin singer-sdk front end. Streams map to Intacct objects by name
(``accounts_payable__vendor`` or ``accounts-payable/vendor``) or through the ``streams``
setting; each drain of at most 500 records goes to the Mutate engine, which validates, writes
with idempotency keys and returns one result per record. Results go to a JSON-lines file
(``results_path``); the log ends with a summary per stream. The run exits non-zero at the end
when a record failed and ``on_error`` is ``fail`` (the default), after every batch was
attempted and every result written.

Input the SDK would crash on is turned into results where the run can safely continue: a
malformed JSON line, a schema violation, an unknown stream. A RECORD before its SCHEMA keeps
the SDK's behaviour (``RecordsWithoutSchemaException``), after draining what was read so far
and recording a result for the offending line.
"""

from __future__ import annotations

import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from functools import cached_property
from typing import Any, ClassVar

import msgspec
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.contrib.msgspec import decoder as msgspec_decoder
from singer_sdk.exceptions import MissingKeyPropertiesError, RecordsWithoutSchemaException
from singer_sdk.sinks import Sink
from singer_sdk.target_base import Target

from intacct_api.client import IntacctClient
from intacct_api.errors import IntacctError
from intacct_api.mutate import MAX_BATCH_SIZE, OPERATIONS, MutateEngine
from intacct_api.mutate_results import ERROR, MutateResult
from intacct_api.mutate_validation import DEFAULT_MAX_STRING_LENGTH
from intacct_api.plugin import IntacctPluginMixin
from intacct_api.settings import SHARED_SETTINGS
from target_intacct.pipeline import ResultPipeline
from target_intacct.results import ResultsWriter, default_results_path
from target_intacct.sinks import UnknownStreamSink, sink_class_for

__all__ = ["TargetIntacct", "TolerantMsgSpecReader"]

MALFORMED = "_MALFORMED_LINE"
CATCH_ALL = "*"
_STREAM_IN_TEXT = re.compile(r'"stream"\s*:\s*"((?:[^"\\]|\\.)*)"')


class TolerantMsgSpecReader(MsgSpecReader):
    """msgspec reader that turns a malformed line into a message instead of an exception.

    The SDK's readers raise ``InvalidInputLine`` and the run dies, losing every record after
    it. Here the line becomes a ``_MALFORMED_LINE`` message carrying its line number and (when
    it can be recovered from the text) its stream, handed to ``on_malformed``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0
        self.on_malformed: Any = None

    def deserialize_json(self, line: str) -> dict:
        """Decode one line; count lines so results can name them."""
        self.line_number += 1
        try:
            message = msgspec_decoder.decode(line)
        except msgspec.DecodeError as exc:  # the SDK would raise InvalidInputLine and stop
            return self._malformed(line, f"malformed JSON: {exc}")
        if not isinstance(message, dict):
            return self._malformed(line, "not a JSON object")
        if "type" not in message:
            return self._malformed(line, "message has no 'type'")
        return message

    def _malformed(self, line: str, reason: str) -> dict:
        found = _STREAM_IN_TEXT.search(line)
        return {
            "type": MALFORMED,
            "line": self.line_number,
            "error": reason[:300],
            "stream": found.group(1) if found else None,
            "text": line[:200],
        }

    def _process_unknown_message(self, message_dict: dict) -> None:
        if message_dict.get("type") == MALFORMED and self.on_malformed is not None:
            self.on_malformed(message_dict)
            return
        super()._process_unknown_message(message_dict)


class TargetIntacct(IntacctPluginMixin, Target):
    """Load records into Sage Intacct (create, update, upsert, delete) via the REST API."""

    name = "target-intacct"
    message_reader_class = TolerantMsgSpecReader
    default_sink_class = UnknownStreamSink

    config_jsonschema: ClassVar[dict] = th.PropertiesList(
        *SHARED_SETTINGS.wrapped.values(),
        th.Property(
            "streams",
            th.ObjectType(
                additional_properties=th.ObjectType(
                    th.Property("object", th.StringType),
                    th.Property("operation", th.StringType, allowed_values=list(OPERATIONS)),
                    th.Property("match_on", th.StringType),
                    th.Property("operation_id", th.StringType),
                )
            ),
            description=(
                "Per-stream mapping {STREAM: {object, operation, match_on, operation_id}}. "
                "Without it a stream maps by name (`accounts_payable__vendor` or "
                "`accounts-payable/vendor`). The key `*` maps every other stream (catch-all)."
            ),
        ),
        th.Property(
            "operation",
            th.StringType,
            default="upsert",
            allowed_values=list(OPERATIONS),
            description=(
                "Default operation: upsert (a record with `key` is updated; others are matched "
                "on `match_on` in one query per batch, then created or updated), create, "
                "update (needs `key`) or delete (needs `key`)."
            ),
        ),
        th.Property(
            "match_on",
            th.StringType,
            default="id",
            description="Natural-key field upsert looks existing records up by.",
        ),
        th.Property(
            "allow_deletes",
            th.BooleanType,
            default=False,
            description=(
                "Delete records carrying `_sdc_deleted_at` (by `key`). When false they are "
                "reported as `skipped` in the results (not failures) and left in Intacct."
            ),
        ),
        th.Property(
            "batch_size",
            th.IntegerType,
            default=MAX_BATCH_SIZE,
            description="Records per write request (Intacct's limit, 500, is also the cap).",
        ),
        th.Property(
            "atomic",
            th.BooleanType,
            default=False,
            description=(
                "Send X-IA-API-Param-Transaction: true, making each request all-or-nothing."
            ),
        ),
        th.Property(
            "on_error",
            th.StringType,
            default="fail",
            allowed_values=["fail", "continue"],
            description=(
                "`fail`: exit non-zero at the end if any record failed (after every batch was "
                "attempted and every result written). `continue`: exit 0 despite failed "
                "records; a failure of the connection itself (login needed, token store, "
                "settings, network) still exits non-zero."
            ),
        ),
        th.Property(
            "dry_run",
            th.BooleanType,
            default=False,
            description=(
                "Validate every record against the request schema of its operation and write "
                "the results without calling the API (upserts validate as creates)."
            ),
        ),
        th.Property(
            "results_path",
            th.StringType,
            description=(
                "JSON-lines file with one result per input record (overwritten per run). "
                "Default: `intacct-results-<UTC timestamp>.jsonl` in the current directory."
            ),
        ),
        th.Property(
            "max_string_length",
            th.IntegerType,
            default=DEFAULT_MAX_STRING_LENGTH,
            description=(
                "Longest string value accepted (the spec has no maxLength); longer values are "
                "reported as errors instead of being sent."
            ),
        ),
    ).to_dict()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        reader = self.message_reader
        if isinstance(reader, TolerantMsgSpecReader):
            reader.on_malformed = self._process_malformed_line
        self._indexes: Counter[str] = Counter()
        self._index_lock = threading.Lock()
        self._writer: ResultsWriter | None = None
        self._writer_lock = threading.Lock()
        self._unknown: dict[str, str] = {}

    # -- shared services -------------------------------------------------------------------

    @cached_property
    def engine(self) -> MutateEngine:
        """One Mutate engine (and one pooled client) for every sink of the run."""
        dry_run = bool(self.config.get("dry_run", False))
        client = None
        if not dry_run:
            client = IntacctClient.shared(self.connection)
        return MutateEngine(
            self.registry,
            client,
            batch_size=int(self.config.get("batch_size") or MAX_BATCH_SIZE),
            atomic=bool(self.config.get("atomic", False)),
            dry_run=dry_run,
            entity=self.config.get("entity") or None,
            match_on=str(self.config.get("match_on") or "id"),
            max_string_length=int(
                self.config.get("max_string_length") or DEFAULT_MAX_STRING_LENGTH
            ),
        )

    @property
    def results(self) -> ResultsWriter:
        """The results file, created on first use (so `--about` never creates one)."""
        with self._writer_lock:
            if self._writer is None:
                path = self.config.get("results_path") or default_results_path()
                self._writer = ResultsWriter(path)
            return self._writer

    @property
    def current_line(self) -> int:
        """Input line number of the message being processed."""
        reader = self.message_reader
        return reader.line_number if isinstance(reader, TolerantMsgSpecReader) else 0

    def next_index(self, stream: str) -> int:
        """0-based position of the next record within its stream."""
        with self._index_lock:
            index = self._indexes[stream]
            self._indexes[stream] += 1
            return index

    # -- stream -> object ------------------------------------------------------------------

    def stream_mapping(self, stream_name: str) -> dict[str, Any]:
        """The effective mapping: explicit entry, catch-all, or by name; operation filled."""
        streams = self.config.get("streams") or {}
        mapping = dict(streams.get(stream_name) or streams.get(CATCH_ALL) or {})
        if mapping.get("operation_id") and not mapping.get("operation"):
            try:
                _, operation = self.engine.resolve(str(mapping["operation_id"]))
                mapping["operation"] = operation
            except IntacctError:
                pass
        mapping.setdefault("operation", self.config.get("operation") or "upsert")
        mapping.setdefault("match_on", self.config.get("match_on") or "id")
        return mapping

    def object_for_stream(self, stream_name: str) -> str | None:
        """The Intacct object a stream writes to, or None (the reason is remembered)."""
        mapping = self.stream_mapping(stream_name)
        target = mapping.get("object") or mapping.get("operation_id") or stream_name
        try:
            info, _ = self.engine.resolve(str(target), mapping.get("operation"))
        except IntacctError as exc:
            self._unknown[stream_name] = (
                f"stream {stream_name!r} maps to no Intacct object ({exc}); set "
                f"`streams.{stream_name}.object` in the config"
            )
            return None
        return str(info.name)

    def unknown_stream_reason(self, stream_name: str) -> str:
        """Why a stream's records cannot be written."""
        return self._unknown.get(stream_name, f"stream {stream_name!r} maps to no object")

    def get_sink_class(self, stream_name: str) -> type[Sink]:
        """A generated sink class per Intacct object; unknown streams report errors."""
        object_name = self.object_for_stream(stream_name)
        if object_name is None:
            self.logger.error("%s", self.unknown_stream_reason(stream_name))
            return UnknownStreamSink
        return sink_class_for(object_name)

    # -- results ---------------------------------------------------------------------------

    @cached_property
    def pipeline(self) -> ResultPipeline:
        """Background sending, results written in submission order (see ``pipeline``)."""
        in_flight = self.engine.max_workers if not self.engine.dry_run else 1
        return ResultPipeline(self.results.write, max_in_flight=in_flight)

    def submit_batch(
        self, sink: Sink, send: Callable[[], list[MutateResult]], *, ordered: bool = True
    ) -> None:
        """Send a sink's planned batch in the background.

        ``ordered`` batches (upsert, update: a later batch may depend on an earlier one) go one
        at a time per sink. Batches that only create or delete do not depend on each other, so
        each gets its own lane and up to ``max_concurrency`` of them overlap; their results are
        still written in input order.
        """
        self.pipeline.submit(id(sink) if ordered else None, sink.stream_name, send)

    def record_results(self, stream: str, results: list[MutateResult]) -> None:
        """Record results known without a request; written after the batches before them."""
        self.pipeline.add(stream, results)

    def _drain_all(self, sink_list: Iterable[Sink], parallelism: int) -> None:
        """The SDK's drain, then wait for every batch in flight and write its results.

        ``drain_all`` writes the STATE message right after its ``_drain_all`` calls, so
        waiting here keeps the promise: STATE only after its records' results are on disk.
        (``drain_one``, when a sink is merely full, does not wait: that is the overlap.)
        """
        super()._drain_all(sink_list, parallelism)
        self.pipeline.wait_all()

    def _process_malformed_line(self, message: dict) -> None:
        stream = message.get("stream")
        line = int(message.get("line") or 0)
        self.logger.error("Line %d is not a valid Singer message: %s", line, message["error"])
        self.record_results(
            stream or "",
            [
                MutateResult(
                    index=-1,
                    line=line,
                    operation="read",
                    object="",
                    status=ERROR,
                    request=message.get("text"),
                    error=f"line {line}: {message['error']}",
                    error_code="malformedLine",
                )
            ],
        )

    def _process_record_message(self, message_dict: dict) -> None:
        """SDK behaviour, but an aborting RECORD first drains and records what came before."""
        try:
            super()._process_record_message(message_dict)
        except (RecordsWithoutSchemaException, MissingKeyPropertiesError) as exc:
            line = self.current_line
            self.drain_all()
            self.record_results(
                str(message_dict.get("stream") or ""),
                [
                    MutateResult(
                        index=-1,
                        line=line,
                        operation="read",
                        object="",
                        status=ERROR,
                        request=message_dict.get("record"),
                        error=f"line {line}: {exc}",
                        error_code=type(exc).__name__,
                    )
                ],
            )
            self._finish()
            raise

    # -- end of run ------------------------------------------------------------------------

    def process_endofpipe(self) -> None:
        """Drain everything (STATE follows each drain), summarise, fail if asked to."""
        super().process_endofpipe()
        failed = self._finish()
        broken = self.results.connection_failures
        if broken:
            # on_error=continue tolerates bad records, not a connection that cannot write any.
            self.logger.error(
                "%d record(s) failed because of the connection (%s); see %s. Exiting non-zero "
                "whatever on_error says.",
                sum(broken.values()),
                ", ".join(sorted(broken)),
                self._writer.path if self._writer else "the results file",
            )
            sys.exit(1)
        if failed and self.config.get("on_error", "fail") == "fail":
            self.logger.error(
                "%d record(s) failed; see %s. Exiting non-zero (on_error=fail).",
                failed,
                self._writer.path if self._writer else "the results file",
            )
            sys.exit(1)

    def _finish(self) -> int:
        """Close the results file and log the summary; return the number of failures."""
        self.pipeline.close()
        writer = self.results
        writer.log_summary(self.logger)
        failed = writer.failed
        writer.close()
        return failed


if __name__ == "__main__":
    TargetIntacct.cli()
