"""The emulated wall clock for time windows: wall time plus an offset that tests move forward.

Intacct's idempotency windows are long (a result is replayed for 48 hours, a key is remembered
for 60 days). Tests must cross those marks in seconds, so every time-window decision of the
emulator reads this clock instead of `time.time()`, and `/_emulator/clock` moves it.
"""

from __future__ import annotations

import datetime as dt
import time


class EmulatorClock:
    """Seconds since the epoch, shifted by ``offset`` (never affects the host's clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        """The emulated time (epoch seconds)."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the emulated time forward (or back, for a negative number)."""
        self.offset += float(seconds)

    def reset(self) -> None:
        """Back to the host's time."""
        self.offset = 0.0

    def iso(self, at: float | None = None) -> str:
        """``at`` (default: now) as ISO-8601 UTC with a ``Z``."""
        moment = self.now() if at is None else at
        return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def snapshot(self) -> dict[str, object]:
        """JSON-ready view for the control route."""
        return {"offset_seconds": self.offset, "now": self.iso()}
