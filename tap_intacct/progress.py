"""Progress lines on long syncs: records and pages so far, at most one line per interval.

Why: a full sync of a large object runs for minutes with nothing in the log between "Beginning
sync" and the summary, so a person cannot tell a slow run from a stuck one. The streams call
:func:`report_progress` once per page; a line is logged only when :data:`INTERVAL_SECONDS`
have passed since the stream's last one (short syncs log none), and the end-of-stream summary
(``IntacctStream.log_sync_costs``) stays the last word.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["INTERVAL_SECONDS", "Progress", "report_progress"]

INTERVAL_SECONDS = 15.0


class Progress:
    """Rate-limited progress of one stream (its own clock, so tests can drive it)."""

    def __init__(
        self,
        log: Callable[..., None],
        name: str,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._name = name
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last = self._started

    def tick(self, records: int, pages: int) -> bool:
        """Log one line if the interval has passed; True when it did."""
        now = self._clock()
        if now - self._last < self._interval:
            return False
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        self._log(
            "%s: %d records, %d pages so far (%.0f records/s)",
            self._name,
            records,
            pages,
            records / elapsed,
        )
        return True


def report_progress(stream: Any, pages: int) -> None:
    """One page of ``stream`` done (``stream.stats.records`` already counts it)."""
    progress = stream.__dict__.get("_intacct_progress")
    if progress is None:
        progress = stream.__dict__["_intacct_progress"] = Progress(stream.logger.info, stream.name)
    progress.tick(stream.stats.records, pages)
