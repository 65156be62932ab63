"""target-intacct: load Singer streams into Sage Intacct through the shared Mutate engine.

A thin singer-sdk front end. Streams map to Intacct objects by name
(``accounts_payable__vendor`` or ``accounts-payable/vendor``) or through the ``streams``
setting; each drain of at most 500 records goes to the Mutate engine, which validates, writes
and returns one result per record. Results go to a JSON-lines file (``results_path``); the log
ends with a summary per stream. The run exits non-zero at the end when a record failed (or its
outcome is unknown) and ``on_error`` is ``fail`` (the default), after every batch was attempted
and every result written.

The promises kept here:

* **No input line aborts a load.** A malformed line, invalid UTF-8, a message without its
  members, a non-object record, a record nested absurdly deep, a RECORD before its SCHEMA, an
  invalid SCHEMA, a record missing its key properties: each becomes an error result (line
  number, stream when known, reason) and the load goes on.
* **Idempotency-Keys protect retries and crash reruns only** (``intacct_api.write_journal``):
  a write journal next to the results remembers the key of every request whose outcome is not
  yet safely behind a STATE, so the rerun of an interrupted load replays instead of writing
  twice, and a completed load's keys are never used again.
* **STATE checkpoints during a load**: a STATE is emitted as soon as every record before it has
  its result on disk (not only at the end), so a long load resumes from the middle.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from singer_sdk.sinks import Sink

from intacct_api.client import IntacctClient
from intacct_api.errors import IntacctError
from intacct_api.mutate import MutateEngine
from intacct_api.mutate_results import ERROR, UNKNOWN, MutateResult
from intacct_api.plugin import IntacctPluginMixin
from intacct_api.process_exit import run_and_exit
from intacct_api.write_journal import WriteJournal
from target_intacct.context import WriteContext
from target_intacct.pipeline import ResultPipeline
from target_intacct.results import ResultsWriter, default_results_path
from target_intacct.sdk_overrides import (
    MESSAGE_ERRORS,
    TargetOverrides,
    TolerantMsgSpecReader,
)
from target_intacct.settings import TARGET_SETTINGS, TargetOptions
from target_intacct.sinks import UnknownStreamSink, sink_class_for

__all__ = ["TargetIntacct"]

CATCH_ALL = "*"


class TargetIntacct(IntacctPluginMixin, TargetOverrides):
    """Load records into Sage Intacct (create, update, upsert, delete) via the REST API."""

    name = "target-intacct"
    package_name = "intacct-singer"
    """The distribution (the plugin's name is not a package): the SDK reads ``--about``'s and
    the log's plugin version from it."""
    message_reader_class = TolerantMsgSpecReader
    default_sink_class = UnknownStreamSink

    config_jsonschema: ClassVar[dict] = TARGET_SETTINGS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = TargetOptions.from_config(dict(self.config))
        reader = self.message_reader
        if isinstance(reader, TolerantMsgSpecReader):
            reader.on_malformed = self._process_malformed_line
        self._indexes: Counter[str] = Counter()
        self._index_lock = threading.Lock()
        self._writer: ResultsWriter | None = None
        self._writer_lock = threading.Lock()
        self._unknown: dict[str, str] = {}
        self._broken_schemas: dict[str, str] = {}
        # STATE checkpoints: input lines of records still waiting for their result, states
        # waiting for those, keys waiting for a state (see _write_results)
        self._checkpoint_lock = threading.RLock()
        self._awaiting: set[int] = set()
        self._awaiting_heap: list[int] = []
        self._states: list[tuple[int, dict]] = []
        self._last_state: dict | None = None
        self._uncovered_keys: dict[str, int] = {}
        """Key -> the last input line its request wrote: settled once a STATE after that line
        is out (a request's records may straddle a STATE; the key waits for the last one)."""
        self._unknown_lines: set[int] = set()
        self._journal: WriteJournal | None = None
        self._token_warmed = False

    # -- shared services -------------------------------------------------------------------

    @cached_property
    def engine(self) -> MutateEngine:
        """One Mutate engine (and one pooled client) for every sink of the run."""
        options = self.options
        client = None
        if not options.dry_run:
            client = IntacctClient.shared(self.connection)
            self._journal = WriteJournal(self.journal_path)
        return MutateEngine(
            self.registry,
            client,
            keys=self._journal,
            batch_size=options.batch_size,
            atomic=options.atomic,
            dry_run=options.dry_run,
            entity=options.entity,
            match_on=options.match_on,
            max_workers=1,  # the result pipeline is the one pool (see max_parallelism)
            max_string_length=options.max_string_length,
            write_mode=options.write_mode,
            bulk_threshold=options.bulk_threshold,
            bulk_poll_timeout=options.bulk_poll_timeout_seconds,
        )

    @cached_property
    def write_context(self) -> WriteContext:
        """What every sink of this run gets (see ``target_intacct.context``)."""
        return WriteContext(
            engine=self.engine,
            mapping=self.stream_mapping,
            current_line=lambda: self.current_line,
            next_index=self.next_index,
            submit=self.pipeline.submit,
            record=self.record_results,
            unknown_reason=self.unknown_stream_reason,
            allow_deletes=self.options.allow_deletes,
            entity=self.options.entity,
            batch_size=self.options.batch_size,
        )

    @property
    def results(self) -> ResultsWriter:
        """The results file, created on first use (so `--about` never creates one)."""
        with self._writer_lock:
            if self._writer is None:
                path = self.options.results_path or default_results_path()
                self._writer = ResultsWriter(path)
            return self._writer

    @property
    def journal_path(self) -> Path:
        """The write journal: the setting, else one per connection beside the results."""
        configured = self.options.journal_path
        if configured:
            return Path(configured)
        results = Path(self.options.results_path or default_results_path())
        settings = self.connection
        identity = "\x00".join(
            str(part or "")
            for part in (settings.base_url, settings.client_id, settings.username, settings.entity)
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
        return results.parent / f".intacct-journal-{digest}.jsonl"

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
        mapping.setdefault("operation", self.options.operation)
        mapping.setdefault("match_on", self.options.match_on)
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
        in_flight = self.connection.max_concurrency if not self.options.dry_run else 1
        return ResultPipeline(self._write_results, max_in_flight=in_flight)

    def _write_results(self, stream: str, results: list[MutateResult]) -> None:
        """Results to disk, then whatever they unblock: STATE messages and journal keys."""
        self.results.write(stream, results)
        with self._checkpoint_lock:
            for result in results:
                if result.line is not None:
                    if result.status == UNKNOWN:
                        # a STATE after it would let a resuming tap skip it: the record must be
                        # sent again (same key, from the journal) for its outcome to be settled
                        self._unknown_lines.add(result.line)
                    else:
                        self._awaiting.discard(result.line)
                if result.idempotency_key and result.status != UNKNOWN:
                    line = result.line if result.line is not None else 0
                    known = self._uncovered_keys.get(result.idempotency_key, line)
                    self._uncovered_keys[result.idempotency_key] = max(known, line)
            self._emit_ready_states()

    # -- STATE checkpoints -----------------------------------------------------------------

    def _expect_result(self, line: int) -> None:
        """A record of ``line`` will get a result: STATEs after it wait for that result."""
        with self._checkpoint_lock:
            self._awaiting.add(line)
            heapq.heappush(self._awaiting_heap, line)

    def _first_awaiting(self) -> int | None:
        heap = self._awaiting_heap
        while heap and heap[0] not in self._awaiting:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _emit_ready_states(self, *, everything: bool = False) -> None:
        """Emit the newest STATE whose records all have results on disk; then settle the
        journal keys it covers (a resuming tap will not send those records again)."""
        with self._checkpoint_lock:
            first = None if everything else self._first_awaiting()
            ready = None
            while self._states and (first is None or self._states[0][0] < first):
                ready = self._states.pop(0)
            if ready is None:
                return
            line, state = ready
            if state != self._last_state:
                self._last_state = state
                self._write_state_message(state)  # the SDK's name (see sdk_overrides)
            covered = [key for key, last in self._uncovered_keys.items() if last < line]
            for key in covered:
                del self._uncovered_keys[key]
            if covered and self._journal is not None:
                self._journal.settle(covered)

    def handle_state_message(self, message_dict: dict) -> None:
        """Queue the STATE; it is emitted once every record before it has its result."""
        self._assert_line_requires(message_dict, requires={"value"})
        with self._checkpoint_lock:
            self._states.append((self.current_line, message_dict["value"]))
            self._emit_ready_states()

    def write_state_line(self, state: dict) -> None:
        """One STATE line on stdout (under a lock: results are collected by several threads)."""
        with self._checkpoint_lock:
            sys.stdout.write(json.dumps(state) + "\n")
            sys.stdout.flush()

    def record_results(self, stream: str, results: list[MutateResult]) -> None:
        """Record results known without a request; written after the batches before them."""
        self.pipeline.add(stream, results)

    def after_drain_all(self) -> None:
        """After the SDK's full drain: wait for every batch in flight, write its results and
        the STATEs they unblock. (``drain_one``, when a sink is merely full, does not wait:
        that is the overlap.)"""
        self.pipeline.wait_all()
        self._emit_ready_states()

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

    def handle_record_message(self, message_dict: dict, stock: Callable[[dict], None]) -> None:
        """The SDK's RECORD handling (``stock``), after the checks that keep one bad line from
        costing the load (each failure is an error result for this line, see the module
        docstring)."""
        line = self.current_line
        stream = message_dict.get("stream")
        record = message_dict.get("record")
        problem = None
        if not isinstance(stream, str) or not stream:
            problem = "RECORD message has no 'stream'"
        elif "record" not in message_dict:
            problem = "RECORD message has no 'record'"
        elif not isinstance(record, dict):
            problem = f"'record' must be a JSON object, not {_json_type(record)}"
        elif stream in self._broken_schemas:
            problem = self._broken_schemas[stream]
        if problem is not None:
            self._record_line_error(line, stream, message_dict.get("record"), problem)
            return
        self._expect_result(line)
        try:
            stock(message_dict)
        except MESSAGE_ERRORS as exc:
            self._record_line_error(line, stream, record, f"{type(exc).__name__}: {exc}")

    def handle_schema_message(self, message_dict: dict, stock: Callable[[dict], None]) -> None:
        """The SDK's SCHEMA handling (``stock``); an unusable schema fails its stream's
        records, not the load (each of them gets an error result naming the SCHEMA line)."""
        line = self.current_line
        stream = message_dict.get("stream")
        self._warm_token()
        try:
            stock(message_dict)
        except Exception as exc:  # any schema problem is this line's problem
            reason = f"invalid SCHEMA for stream {stream!r}: {type(exc).__name__}: {exc}"[:300]
            if isinstance(stream, str) and stream:
                self._broken_schemas[stream] = (
                    f"stream {stream!r} has no usable SCHEMA (line {line}: {reason})"
                )
                self._sinks_active.pop(stream, None)
                self.mapper.stream_maps.pop(stream, None)
            self._record_line_error(line, stream, message_dict.get("schema"), reason, "schema")
            return
        if isinstance(stream, str):
            self._broken_schemas.pop(stream, None)

    def _warm_token(self) -> None:
        """Fetch the access token in the background when the first SCHEMA arrives.

        The token request (a full round trip to Intacct) then overlaps with what the first
        batch needs anyway (spec index, request compilers, reading 500 records) instead of
        delaying the first write. A failure is left for the first real request to report
        (it asks again and raises the clear error); a dry run never asks.
        """
        if self._token_warmed or self.options.dry_run:
            return
        self._token_warmed = True
        provider = IntacctClient.shared(self.connection).token_provider()

        def fetch() -> None:
            try:
                provider.access_token()
            except Exception as exc:  # reported by the first real request, which asks again
                self.logger.debug(
                    "early token request failed (%s); the first write retries", type(exc).__name__
                )

        threading.Thread(target=fetch, name="intacct-token-warmup", daemon=True).start()

    def _record_line_error(
        self,
        line: int,
        stream: Any,
        request: Any,
        reason: str,
        operation: str = "read",
    ) -> None:
        self.logger.error("Line %d: %s", line, reason)
        self.record_results(
            stream if isinstance(stream, str) else "",
            [
                MutateResult(
                    index=-1,
                    line=line,
                    operation=operation,
                    object="",
                    status=ERROR,
                    request=request,
                    error=f"line {line}: {reason}",
                    error_code="invalidMessage",
                )
            ],
        )

    # -- end of run ------------------------------------------------------------------------

    def process_endofpipe(self) -> None:
        """Drain everything (STATE follows each drain), summarise, fail if asked to."""
        super().process_endofpipe()
        failed = self._finish()
        broken = self.results.connection_failures
        if broken:
            # on_error=continue tolerates bad records, not a connection that cannot write any.
            reason = self._writer.first_connection_error if self._writer else None
            self.logger.error(
                "Cannot write to Intacct: %s. %d record(s) not written (%s); see %s. Exiting "
                "non-zero whatever on_error says.",
                reason or "the connection failed",
                sum(broken.values()),
                ", ".join(sorted(broken)),
                self._writer.path if self._writer else "the results file",
            )
            sys.exit(1)
        if failed and self.options.on_error == "fail":
            unknown = self._writer.unknown if self._writer else 0
            self.logger.error(
                "%d record(s) not written as asked (%d failed, %d with an unknown outcome: "
                "rerun within 48 hours to settle them); see %s. Exiting non-zero "
                "(on_error=fail).",
                failed,
                failed - unknown,
                unknown,
                self._writer.path if self._writer else "the results file",
            )
            sys.exit(1)

    def _finish(self) -> int:
        """Close the results file and log the summary; return the number of records not
        known to be written as asked (failed or unknown)."""
        self.pipeline.close()
        with self._checkpoint_lock:
            # every result is written: what still waits is a record whose outcome is unknown
            # (STATEs after it stay unsent) or one a stream map filtered out (never a result)
            self._awaiting = set(self._unknown_lines)
            self._emit_ready_states(everything=not self._unknown_lines)
        journal = self._journal
        if journal is not None:  # the load is complete: only unknown outcomes stay pending
            with self._checkpoint_lock:
                # with an unknown outcome, the records after it will be sent again by a
                # resuming tap: their keys stay pending so those writes are replayed
                first_unknown = min(self._unknown_lines, default=None)
                journal.settle(
                    key
                    for key, line in self._uncovered_keys.items()
                    if first_unknown is None or line < first_unknown
                )
                self._uncovered_keys = {}
            if journal.resumed:
                self.logger.info(
                    "Re-sent %d request(s) of an interrupted run with their original "
                    "Idempotency-Keys (results marked `replayed` where Intacct had already "
                    "executed them).",
                    journal.resumed,
                )
            journal.close()
        writer = self.results
        writer.log_summary(self.logger)
        failed = writer.failed + writer.unknown
        writer.close()
        return failed


def _json_type(value: Any) -> str:
    """How a person would name a JSON value's type in an error."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def main() -> None:
    """The ``target-intacct`` console script: the SDK's command, then a prompt exit
    (:mod:`intacct_api.process_exit`)."""
    run_and_exit(TargetIntacct.cli)


if __name__ == "__main__":
    main()
