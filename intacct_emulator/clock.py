"""Audit timestamps that strictly increase, in one canonical text form.

Incremental extraction filters on ``audit.modifiedDateTime >= bookmark``; if two writes shared
a timestamp a tap could not tell them apart, so every write gets a later stamp than the last
one (millisecond steps, so a burst of writes does not drift far ahead of the wall clock).
Stored timestamps are always ``YYYY-MM-DDTHH:MM:SS.mmmZ`` so SQL string order is time order;
filter values in other ISO forms are normalised with :func:`canonical` before comparing.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


def format_ms(epoch_ms: int) -> str:
    """Canonical ISO-8601 UTC text for a millisecond epoch."""
    seconds, ms = divmod(epoch_ms, 1000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms:03d}Z"


def parse_ms(text: str) -> int:
    """Millisecond epoch of an ISO-8601 timestamp (``Z`` or offset; naive = UTC)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


def canonical(text: str) -> str:
    """Normalise an ISO timestamp (or date) to the stored form; unparsable text is returned."""
    try:
        return format_ms(parse_ms(text))
    except ValueError:
        return text


class AuditClock:
    """Wall clock that never repeats or goes backwards (thread-safe)."""

    def __init__(self, floor: str | None = None) -> None:
        self._last = parse_ms(floor) if floor else 0
        self._lock = threading.Lock()

    def advance_past(self, stamp: str | None) -> None:
        """Make later stamps exceed ``stamp`` (after seeding or reopening a database)."""
        if not stamp:
            return
        try:
            value = parse_ms(stamp)
        except ValueError:
            return
        with self._lock:
            self._last = max(self._last, value)

    def now(self) -> str:
        """The next timestamp: wall time, or 1 ms after the previous one if that is later."""
        with self._lock:
            self._last = max(int(time.time() * 1000), self._last + 1)
            return format_ms(self._last)
