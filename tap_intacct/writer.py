"""A Singer message writer that writes stdout in large chunks, flushing only when it matters.

singer-sdk's writers (``SingerWriter`` and ``MsgSpecWriter``) call ``sys.stdout.flush()`` after
every message, and even without that flush stdout's 8 KiB buffer holds only two ~3 KB RECORD
lines: piped into a target that is one ``write`` system call per record
(docs/singer-sdk-notes.md §7, knob 6; ``benchmarks/README.md``, tap finding 2).

RECORD lines are therefore collected in a buffer of our own and written to
``sys.stdout.buffer`` in chunks of about :attr:`RecordBufferedWriter.buffer_size` (1 MiB).
Every other message (SCHEMA, STATE, ACTIVATE_VERSION, BATCH) is appended behind the pending
records and the whole lot is written and flushed at once: a STATE message never reaches the
target ahead of the records it covers, and nothing is held back longer than the next state,
the next stream, or :meth:`RecordBufferedWriter.flush` (the streams call it when a partition's
read ends, normally or not, because the SDK does not always emit a STATE after the last
records).

``sys.stdout`` is looked up at each write, never cached, so the SDK's test runners and
embedders that redirect stdout keep working.

:meth:`RecordBufferedWriter.write_record` is the streams' fast path: the record is encoded
between a pre-encoded message head (type, stream) and tail (version, time_extracted), the
same bytes as formatting a ``RecordMessage`` (``tests/tap/test_tap_sync.py`` compares them).
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import msgspec
from singer_sdk.contrib.msgspec import MsgSpecWriter, enc_hook
from singer_sdk.singerlib.encoding.base import SingerMessageType
from singer_sdk.singerlib.encoding.simple import Message

__all__ = ["RecordBufferedWriter", "flush_held_records"]

_RECORD = SingerMessageType.RECORD


class RecordBufferedWriter(MsgSpecWriter):
    """msgspec encoding; RECORD lines buffered up to ``buffer_size``, flush on any other."""

    buffer_size = 1 << 20
    """Pending RECORD bytes that trigger a write to stdout (no flush needed for those)."""

    def __init__(self) -> None:
        super().__init__()
        # Same settings as singer-sdk's msgspec encoder (its output is what tests compare).
        self._encoder = msgspec.json.Encoder(enc_hook=enc_hook, decimal_format="number")
        self._pending = bytearray()

    def write_message(self, message: Message) -> None:
        """Queue one message; write everything out (and flush) unless it is a RECORD."""
        pending = self._pending
        size = len(pending)
        try:
            self._encoder.encode_into(message.to_dict(), pending, -1)
        except BaseException:
            del pending[size:]  # never leave half a line behind
            raise
        pending += b"\n"
        if message.type is not _RECORD:
            self.flush()
        elif len(pending) >= self.buffer_size:
            self._drain()

    def record_frame(
        self, stream: str, version: int | None, time_extracted: dt.datetime | None
    ) -> tuple[bytes, bytes]:
        """Head and tail bytes around the record of a RECORD message with these fields.

        Key order and encoding are those of ``RecordMessage.to_dict()`` through this writer:
        ``type, stream, record[, version][, time_extracted]``, UTC time.
        """
        head = self._encoder.encode({"type": "RECORD", "stream": stream})
        after: dict[str, Any] = {}
        if version is not None:
            after["version"] = version
        if time_extracted is not None:
            after["time_extracted"] = time_extracted.astimezone(dt.UTC)
        tail = self._encoder.encode(after) if after else b"{}"
        rest = b"," + tail[1:] if after else b"}"
        return head[:-1] + b',"record":', rest + b"\n"

    def write_record(self, head: bytes, record: dict[str, Any], tail: bytes) -> None:
        """Queue one RECORD line framed by :meth:`record_frame` (the per-record fast path)."""
        pending = self._pending
        size = len(pending)
        pending += head
        try:
            self._encoder.encode_into(record, pending, -1)
        except BaseException:
            del pending[size:]  # never leave half a line behind
            raise
        pending += tail
        if len(pending) >= self.buffer_size:
            self._drain()

    def flush(self) -> None:
        """Write whatever is pending and flush stdout."""
        if sys.stdout is None:  # interpreter shutdown: nowhere left to write
            return
        if self._pending:
            self._drain()
        sys.stdout.flush()

    def _drain(self) -> None:
        sys.stdout.buffer.write(self._pending)
        self._pending.clear()


def flush_held_records(writer: object) -> None:
    """Write out the RECORD lines a buffered writer still holds: a stream's read ended, and
    the SDK does not always write another message after a stream's last records."""
    if isinstance(writer, RecordBufferedWriter):
        writer.flush()
