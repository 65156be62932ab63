"""Every place target-intacct replaces singer-sdk behaviour, in one module.

singer-sdk gives a target no hook for "a bad message costs one line, not the load", for STATE
checkpoints that wait for results, or for a cheaper per-record path, so these override SDK
methods, several of them private. Each is listed in :data:`SDK_OVERRIDES` with the signature it
was written against; ``tests/core/test_sdk_overrides.py`` fails when an SDK upgrade changes or
removes one, so an upgrade shows exactly what to re-read.

**Falling back to stock SDK behaviour**: set ``TARGET_INTACCT_STOCK_SDK=1`` in the environment.
Every override below then does exactly what the SDK does (malformed input aborts the load
again, STATE is emitted after full drains only, the SDK stamps its ``_sdc_*`` metadata); the
write path itself (engine, journal, results) is unchanged. Meant for telling an SDK problem
from ours, not for production.

The target's own logic stays in ``target.py``; what is here only routes the SDK's calls to it:

* :class:`TolerantMsgSpecReader` (the message reader): reads bytes so invalid UTF-8 costs one
  line, turns malformed JSON and message-level SDK exceptions into ``_MALFORMED_LINE``
  messages;
* :class:`TargetOverrides`: RECORD/SCHEMA/STATE handling, the STATE writer, the full drain,
  and one drain thread (the result pipeline is the one worker pool);
* :class:`SinkOverrides`: keeps the ``_sdc_*`` values a record arrived with instead of stamping
  seven new ones, and parses only the top-level date-like fields the schema declares.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from typing import IO, Any

import msgspec
from singer_sdk import about
from singer_sdk.contrib.msgspec import MsgSpecReader
from singer_sdk.contrib.msgspec import decoder as msgspec_decoder
from singer_sdk.exceptions import (
    InvalidJSONSchema,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
from singer_sdk.helpers._compat import (
    date_fromisoformat,
    datetime_fromisoformat,
    time_fromisoformat,
)
from singer_sdk.helpers._typing import (
    get_datelike_property_type,
    handle_invalid_timestamp_in_record,
)
from singer_sdk.helpers.conform import DatetimeErrorTreatmentEnum
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.sinks import BatchSink, Sink
from singer_sdk.target_base import Target

__all__ = [
    "MALFORMED",
    "MESSAGE_ERRORS",
    "SDK_OVERRIDES",
    "STOCK_SDK",
    "SinkOverrides",
    "TargetOverrides",
    "TolerantMsgSpecReader",
]

STOCK_SDK = os.environ.get("TARGET_INTACCT_STOCK_SDK", "").strip().lower() in ("1", "true", "yes")
"""Route every override to the stock SDK method (see the module docstring)."""

SDK_OVERRIDES: tuple[tuple[type, str, str | None], ...] = (
    (MsgSpecReader, "process_lines", "(self, file_input, callbacks)"),
    (MsgSpecReader, "deserialize_json", "(self, line)"),
    (MsgSpecReader, "_process_unknown_message", "(self, message_dict)"),
    (Target, "_process_record_message", "(self, message_dict)"),
    (Target, "_process_schema_message", "(self, message_dict)"),
    (Target, "_process_state_message", "(self, message_dict)"),
    (Target, "_write_state_message", "(self, state)"),
    (Target, "_drain_all", "(self, sink_list, parallelism)"),
    (Target, "max_parallelism", None),
    (Target, "_get_about_info", "()"),
    (Sink, "_add_sdc_metadata_to_record", "(self, record, message, context)"),
    (Sink, "_parse_timestamps_in_record", "(self, record, schema, treatment)"),
    (Sink, "include_sdc_metadata_properties", None),
)
"""(SDK class, member, parameter names it was written against; None for a property)."""

MALFORMED = "_MALFORMED_LINE"
MAX_NESTING = 64
"""Deepest nesting a record may have: Intacct objects are a few levels deep; a record nested
hundreds of levels would exhaust the recursion of every walker on the way."""
_STREAM_IN_TEXT = re.compile(r'"stream"\s*:\s*"((?:[^"\\]|\\.)*)"')
MESSAGE_ERRORS = (
    InvalidInputLine,
    InvalidJSONSchema,
    MissingKeyPropertiesError,
    RecordsWithoutSchemaException,
)
"""What the SDK raises about one message (never about the connection): turned into an error
result for that line."""


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

    def process_lines(
        self, file_input: IO[str] | None, callbacks: dict[str, Callable[[dict], None]]
    ) -> Counter[str]:
        """The SDK's loop, reading bytes so that invalid UTF-8 costs one line, not the load.

        Text-mode iteration (the SDK's) raises ``UnicodeDecodeError`` out of the loop on the
        first bad byte; here each line is decoded on its own and a bad one becomes a
        ``_MALFORMED_LINE`` message. A message a callback rejects (the SDK's message-level
        exceptions) is reported the same way and reading goes on.
        """
        if STOCK_SDK:
            return super().process_lines(file_input, callbacks)
        stats: Counter[str] = Counter()
        source = file_input if file_input is not None else sys.stdin
        lines: Iterable[bytes | str] = getattr(source, "buffer", None) or source
        for raw in lines:
            if isinstance(raw, bytes):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    self.line_number += 1
                    text = raw.decode("utf-8", errors="replace")
                    self._report(self._malformed(text, f"invalid UTF-8: {exc.reason}"))
                    stats[MALFORMED] += 1
                    continue
            else:
                line = raw
            if not line.strip():
                self.line_number += 1
                continue
            self._current_message = line
            message = self.deserialize_json(line)
            record_type = message["type"]
            callback = callbacks.get(record_type)
            try:
                if callback is not None:
                    callback(message)
                else:
                    self._process_unknown_message(message)
            except MESSAGE_ERRORS as exc:
                stream = message.get("stream")
                self._report(
                    {
                        "type": MALFORMED,
                        "line": self.line_number,
                        "error": f"{type(exc).__name__}: {exc}"[:300],
                        "stream": stream if isinstance(stream, str) else None,
                        "text": line[:200],
                    }
                )
            stats[record_type] += 1
        return stats

    def _report(self, message: dict) -> None:
        if self.on_malformed is not None:
            self.on_malformed(message)

    def deserialize_json(self, line: str) -> dict:
        """Decode one line; count lines so results can name them."""
        self.line_number += 1
        if STOCK_SDK:
            return super().deserialize_json(line)
        try:
            message = msgspec_decoder.decode(line)
        except msgspec.DecodeError as exc:  # the SDK would raise InvalidInputLine and stop
            return self._malformed(line, f"malformed JSON: {exc}")
        if not isinstance(message, dict):
            return self._malformed(line, "not a JSON object")
        if "type" not in message:
            return self._malformed(line, "message has no 'type'")
        if (line.count("{") + line.count("[")) > MAX_NESTING and _depth(message) > MAX_NESTING:
            return self._malformed(line, f"nested deeper than {MAX_NESTING} levels")
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


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value (iterative: deep input must not recurse)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > MAX_NESTING:
                return deepest
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


class TargetOverrides(Target):
    """The SDK's message handlers and drain, routed to the target's hooks (``target.py``)."""

    @property
    def max_parallelism(self) -> int:
        """One drain thread: a drain only plans its batch (CPU) and hands it to the result
        pipeline, whose pool sends it; parallel drains would nest a second pool."""
        return Target.max_parallelism.fget(self) if STOCK_SDK else 1  # type: ignore[attr-defined]

    @max_parallelism.setter
    def max_parallelism(self, new_value: int) -> None:
        Target.max_parallelism.fset(self, new_value)  # type: ignore[attr-defined]

    @classmethod
    def _get_about_info(cls) -> about.AboutInfo:
        """The SDK's, with the description on one line (a multi-line docstring would indent
        the markdown ``# target-intacct`` heading into a code block)."""
        info = super()._get_about_info()
        if not STOCK_SDK:
            info.description = " ".join((cls.__doc__ or "").split())
        return info

    def _process_record_message(self, message_dict: dict) -> None:
        if STOCK_SDK:
            super()._process_record_message(message_dict)
            return
        self.handle_record_message(message_dict, super()._process_record_message)

    def _process_schema_message(self, message_dict: dict) -> None:
        if STOCK_SDK:
            super()._process_schema_message(message_dict)
            return
        self.handle_schema_message(message_dict, super()._process_schema_message)

    def _process_state_message(self, message_dict: dict) -> None:
        if STOCK_SDK:
            super()._process_state_message(message_dict)
            return
        self.handle_state_message(message_dict)

    def _write_state_message(self, state: dict) -> None:
        if STOCK_SDK:
            super()._write_state_message(state)
            return
        self.write_state_line(state)

    def _drain_all(self, sink_list: Iterable[Sink], parallelism: int) -> None:
        # drain_all() writes the STATE right after its _drain_all calls: waiting here keeps
        # the promise "STATE only after its records' results are on disk" in stock mode too
        super()._drain_all(sink_list, parallelism)
        self.after_drain_all()

    # -- hooks the target implements --------------------------------------------------------

    def handle_record_message(self, message_dict: dict, stock: Callable[[dict], None]) -> None:
        """A RECORD; ``stock`` is the SDK's handler."""
        raise NotImplementedError

    def handle_schema_message(self, message_dict: dict, stock: Callable[[dict], None]) -> None:
        """A SCHEMA; ``stock`` is the SDK's handler."""
        raise NotImplementedError

    def handle_state_message(self, message_dict: dict) -> None:
        """A STATE message."""
        raise NotImplementedError

    def write_state_line(self, state: dict) -> None:
        """Emit one STATE."""
        raise NotImplementedError

    def after_drain_all(self) -> None:
        """After a full drain of every sink."""
        raise NotImplementedError


class SinkOverrides(BatchSink):
    """The SDK's per-record metadata and timestamp work, trimmed to what the target uses."""

    def _add_sdc_metadata_to_record(self, record: dict, message: dict, context: dict) -> None:
        """Keep the ``_sdc_*`` values the record carries; invent none.

        The SDK would stamp extraction/receive/batch timestamps and sequence numbers (two clock
        reads and two isoformats per record) that this target never writes anywhere: the
        engine drops top-level ``_*`` names from requests; ``_sdc_deleted_at`` is what matters.
        """
        if STOCK_SDK:
            super()._add_sdc_metadata_to_record(record, message, context)

    @property
    def include_sdc_metadata_properties(self) -> bool:
        """Always keep ``_sdc_*`` so ``_sdc_deleted_at`` reaches us (dropped before sending)."""
        return True

    def prepare_timestamp_plan(self) -> None:
        """Top-level date-like properties and all property names, found once per schema."""
        props: dict[str, Any] = self.schema.get("properties") or {}
        self._schema_names = frozenset(props)
        self._open_schema = bool(self.schema.get("additionalProperties", False))
        self._datelike_fields: tuple[tuple[str, str], ...] = tuple(
            (name, kind)
            for name, sub in props.items()
            if (kind := get_datelike_property_type(sub)) is not None
        )

    def _parse_timestamps_in_record(
        self, record: dict, schema: dict, treatment: DatetimeErrorTreatmentEnum
    ) -> None:
        """The SDK's parse of top-level date/date-time/time strings, for those fields only.

        Same conversions, warnings ("No schema for record field") and error treatment as
        ``Sink._parse_timestamps_in_record``, without a schema lookup per field per record.
        """
        if STOCK_SDK or schema is not self.schema:  # not the sink's own schema: generic walk
            super()._parse_timestamps_in_record(record, schema, treatment)
            return
        if not self._open_schema:
            unknown = record.keys() - self._schema_names
            for key in unknown:
                if record[key] is not None and key not in self._warned_missing_fields:
                    self.logger.warning("No schema for record field '%s'", key)
                    self._warned_missing_fields.add(key)
        for name, kind in self._datelike_fields:
            value = record.get(name)
            if value is None:
                continue
            try:
                if kind == "time":
                    parsed: Any = time_fromisoformat(value)
                elif kind == "date":
                    parsed = date_fromisoformat(value)
                else:
                    parsed = datetime_fromisoformat(value)
            except ValueError as ex:
                parsed = handle_invalid_timestamp_in_record(
                    record, [name], value, kind, ex, treatment, self.logger
                )
            record[name] = parsed
