"""Every place tap-intacct replaces singer-sdk behaviour, in one module.

The stock per-record path is ~20x slower than a bare loop (docs/singer-sdk-notes.md §7), and the SDK
has no public hook for the steps that cost the most, so :class:`StreamOverrides` overrides four
private ``Stream`` methods, each falling back to the SDK whenever its shortcut does not apply
(stream maps, flattening, child streams, non-string bookmarks):

* ``_write_record_message``: encodes the record straight into the writer's buffer between a
  head and tail computed once per page (no ``RecordMessage``, no ``to_dict``);
* ``_process_record``: skips child-context work for a stream without children;
* ``_increment_stream_state``: sets the bookmark directly for a sorted string replication key;
* ``_generate_record_messages``: skips the per-record deselect walk (records are built from the
  selected fields only) and the per-record ``utc_now``.

``tests/tap/test_tap_sync.py`` pins their signatures, checks the SDK's loop still calls them the
way they expect, and checks the output is message for message what the SDK's path writes.

**Falling back to stock SDK behaviour**: set ``TAP_INTACCT_STOCK_SDK=1`` in the environment;
every override then calls the SDK's own method (slower, same output).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Generator
from typing import Any

from singer_sdk import Stream, Tap, about
from singer_sdk.helpers.types import Context, Record
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import RecordMessage

from tap_intacct.writer import RecordBufferedWriter

__all__ = ["SDK_OVERRIDES", "STOCK_SDK", "StreamOverrides", "SyncHookOverrides", "TapOverrides"]

STOCK_SDK = os.environ.get("TAP_INTACCT_STOCK_SDK", "").strip().lower() in ("1", "true", "yes")
"""Route every override to the stock SDK method (see the module docstring)."""

SDK_OVERRIDES: tuple[tuple[type, str, str | None], ...] = (
    (Stream, "_write_record_message", "(self, record)"),
    (Stream, "_process_record", "(self, record, child_context, partition_context)"),
    (Stream, "_increment_stream_state", "(self, latest_record, context)"),
    (Stream, "_generate_record_messages", "(self, record)"),
    (Stream, "_sync_records", "(self, context, write_messages)"),
    (Tap, "_get_about_info", "()"),
)
"""(SDK class, member, parameter names it was written against)."""


class TapOverrides(Tap):
    """The tap class's one override."""

    @classmethod
    def _get_about_info(cls) -> about.AboutInfo:
        """The SDK's, with the description on one line.

        The SDK's markdown template ``dedent``s an f-string that embeds the description; a
        multi-line docstring leaves its lines unindented, so nothing is dedented and the
        ``# tap-intacct`` heading ends up indented into a code block.
        """
        info = super()._get_about_info()
        if not STOCK_SDK:
            info.description = " ".join((cls.__doc__ or "").split())
        return info


class SyncHookOverrides(Stream):
    """A hook after a stream's whole sync (``Stream.sync`` is final, so this is the place)."""

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict[Any, Any], Any, Any]:
        """:meth:`before_sync`, the SDK's record loop over every partition, :meth:`after_sync`."""
        self.before_sync()
        yield from super()._sync_records(context, write_messages=write_messages)
        self.after_sync()

    def before_sync(self) -> None:
        """Called before the first partition is read (a no-op here)."""

    def after_sync(self) -> None:
        """Called once every partition was read and the final STATE written (a no-op here)."""


class StreamOverrides(SyncHookOverrides):
    """The SDK's per-record steps, with direct paths where nothing needs the SDK's work."""

    # set by the stream (IntacctStream) per read
    _extracted_at: dt.datetime
    _fast_writer: RecordBufferedWriter | None
    _frame_at: dt.datetime | None
    _frame: tuple[bytes, bytes]
    _fast_state: bool
    _state_for: Context | None
    _state_dict: dict[str, Any] | None
    _full_table: bool

    def _fast_record_writer(self) -> RecordBufferedWriter | None:
        """Our writer when a record goes out exactly as it is (no stream map, no flattening)."""
        writer = self._tap.message_writer
        maps = self.stream_maps
        if STOCK_SDK or not isinstance(writer, RecordBufferedWriter) or len(maps) != 1:
            return None
        only = maps[0]
        if type(only) is not SameRecordTransform:
            return None
        if only.flattening_options and only.flattening_enabled:
            return None
        return writer

    def _write_record_message(self, record: Record) -> None:
        """The SDK's, minus the message objects when the record needs no transformation.

        The SDK builds a
        ``RecordMessage`` (converting ``time_extracted`` to UTC per record), turns it back
        into a dict and encodes that; here the record is encoded between a head and tail
        computed once per page (the same bytes). Streams with stream maps or flattening take
        the SDK's path (through :meth:`_generate_record_messages`).
        """
        writer = self._fast_writer
        if writer is None:
            super()._write_record_message(record)
            return
        if self._frame_at is not self._extracted_at:
            self._frame_at = self._extracted_at
            self._frame = writer.record_frame(
                self.stream_maps[0].stream_alias, self._stream_version, self._extracted_at
            )
        head, tail = self._frame
        writer.write_record(head, record, tail)
        self.state_manager.is_flushed = False

    def _process_record(
        self,
        record: Record,
        child_context: Context | None = None,
        partition_context: Context | None = None,
    ) -> None:
        """The SDK's, minus the per-record child-context work when there are no children.

        Private SDK API (pinned in ``tests/tap/test_tap_sync.py``). What remains is what the SDK
        does for a stream without child streams: partition keys missing from the record are
        added to it.
        """
        if STOCK_SDK or self.child_streams:
            super()._process_record(
                record, child_context=child_context, partition_context=partition_context
            )
            return
        if partition_context:
            for key, value in partition_context.items():
                if key not in record:
                    record[key] = value

    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        """The SDK's bookmark update, done directly in the common case.

        Private SDK API (pinned in ``tests/tap/test_tap_sync.py``). For a sorted stream without
        sort checking or state partitioning keys, the SDK's ``increment_state`` sets
        ``replication_key`` and ``replication_key_value`` on the partition's state dict to the
        record's (JSON-compatible) value unconditionally; that is done here for string values
        (``_modified_at``), with the state dict looked up once per partition. Anything else
        (null or non-string values, other stream settings) goes through the SDK.
        """
        key = self.replication_key
        if self._full_table:
            return  # no timestamp in these records: the bookmark stays where it was
        if self._fast_state and key is not None and not STOCK_SDK:
            value = latest_record[key]
            if type(value) is str:
                if context is not self._state_for or self._state_dict is None:
                    self._state_dict = self.get_context_state(context)
                    self._state_for = context
                state = self._state_dict
                state["replication_key"] = key
                state["replication_key_value"] = value
                return
        super()._increment_stream_state(latest_record, context=context)

    def _generate_record_messages(self, record: Record) -> Generator[RecordMessage, None, None]:
        """Like the SDK's, minus the deselect walk and per-record ``utc_now`` (see module doc).

        Conformance is NONE, so the SDK's version would only have popped deselected keys,
        which our records never contain.
        """
        if STOCK_SDK:
            yield from super()._generate_record_messages(record)
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=self._extracted_at,
                )
