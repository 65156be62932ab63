"""When to retry a request and how long to wait first.

Intacct throttles with 429 (and the gateway with 503) and says how long to wait in one of
several headers: a standard ``Retry-After`` is not documented but cheap to honour, and the
documented ones are spelled inconsistently (``X-IA-Throttle-Limit-RetryAfter``,
``X-IA-Hour-Rate-Limit-Retry-After``, ``X-IA-TENANT-Throttle-Limit-Retry-After``...). Rather than
listing them, any ``X-IA-*-Retry-After``/``X-IA-*-RetryAfter`` header counts, and when several
limits are hit at once the longest wait wins because all of them must clear.

Transient server failures (500/502/504, dropped connections) carry no hint, so they get capped
exponential backoff with full jitter: parallel workers that failed together then spread out
instead of hammering the API in lock-step. Sleep and randomness are injectable so tests run in
milliseconds.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BACKOFF_STATUSES",
    "THROTTLE_STATUSES",
    "Pacer",
    "RetryPolicy",
    "Wait",
    "retry_after_from_headers",
]

THROTTLE_STATUSES = frozenset({429, 503})
"""Statuses meaning "not processed, come back later": the server's wait headers are honoured."""

BACKOFF_STATUSES = frozenset({500, 502, 504})
"""Transient server failures without a wait hint: exponential backoff with jitter."""

_IA_RETRY_HEADER = re.compile(r"^x-ia-.*-retry-?after$", re.IGNORECASE)


@dataclass(frozen=True)
class Wait:
    """A decided pause: how long and why (the reason goes into the single WARNING log line)."""

    seconds: float
    reason: str
    backoff: bool = False
    """True for our own exponential backoff (it escalates); False when the server said how long."""


def _parse_seconds(value: str, now: float) -> float | None:
    """Seconds from a delta (``"12"``, ``"1.5"``) or an HTTP date; None when unparseable."""
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; be lenient with a missing zone
            return None
        seconds = when.timestamp() - now
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _original_case_items(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Header items with their names as the server spelled them (for the log line).

    ``httpx.Headers`` lower-cases names in ``items()`` but keeps the wire spelling in ``raw``.
    """
    raw = getattr(headers, "raw", None)
    if isinstance(raw, list) and all(isinstance(pair, tuple) for pair in raw):
        return [
            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1")) for name, value in raw
        ]
    return list(headers.items())


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> Wait | None:
    """The wait the server asked for, or None when no usable header is present.

    A standard ``Retry-After`` (seconds or HTTP date) is checked first; otherwise the longest of
    the ``X-IA-*-Retry-After`` family. Header names are matched case-insensitively whatever kind
    of mapping is passed (``httpx.Headers`` or a plain dict).
    """
    current = time.time() if now is None else now
    items = _original_case_items(headers)
    for name, value in items:
        if name.lower() == "retry-after":
            seconds = _parse_seconds(value, current)
            if seconds is not None:
                return Wait(seconds, name)
    best: Wait | None = None
    for name, value in items:
        if _IA_RETRY_HEADER.match(name):
            seconds = _parse_seconds(value, current)
            if seconds is not None and (best is None or seconds > best.seconds):
                best = Wait(seconds, name)
    return best


@dataclass
class RetryPolicy:
    """How many times to retry and how long to wait between attempts.

    ``max_retries`` counts retries, so a request is sent at most ``max_retries + 1`` times.
    ``max_wait`` caps a server-requested wait (an hourly limit can ask for most of an hour);
    ``max_backoff`` caps the exponential backoff.
    """

    max_retries: int = 5
    base_delay: float = 1.0
    max_backoff: float = 60.0
    max_wait: float = 300.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rand: Callable[[], float] = field(default=random.random, repr=False)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RetryPolicy:
        """Build from settings (``max_retries``, ``max_retry_wait``) plus keyword overrides."""
        values: dict[str, Any] = {
            "max_retries": int(getattr(settings, "max_retries", cls.max_retries)),
            "max_wait": float(getattr(settings, "max_retry_wait", cls.max_wait)),
        }
        values.update(overrides)
        return cls(**values)

    @property
    def attempts(self) -> int:
        """Total number of sends allowed for one request."""
        return max(0, self.max_retries) + 1

    def can_retry(self, retries_done: int) -> bool:
        """True while another retry is allowed after ``retries_done`` retries."""
        return retries_done < max(0, self.max_retries)

    @staticmethod
    def is_retryable_status(status: int) -> bool:
        """Statuses worth another try: throttles and transient server failures."""
        return status in THROTTLE_STATUSES or status in BACKOFF_STATUSES

    def backoff(self, retries_done: int) -> float:
        """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**n)]."""
        ceiling = min(self.max_backoff, self.base_delay * (2.0 ** min(retries_done, 62)))
        return max(0.0, self.rand() * ceiling)

    def wait_for_status(self, status: int, headers: Mapping[str, str], retries_done: int) -> Wait:
        """Decide the pause before retrying a response with ``status``.

        Throttle statuses use the server's header when there is one (capped at ``max_wait``);
        everything else, and throttles without a header, back off exponentially.
        """
        if status in THROTTLE_STATUSES:
            asked = retry_after_from_headers(headers)
            if asked is not None:
                if asked.seconds > self.max_wait:
                    return Wait(self.max_wait, f"{asked.reason}, capped from {asked.seconds:.1f} s")
                return asked
        return Wait(self.backoff(retries_done), f"backoff, retry {retries_done + 1}", backoff=True)

    def wait_for_exception(self, exc: BaseException, retries_done: int) -> Wait:
        """Decide the pause before retrying after a connection-level failure."""
        return Wait(self.backoff(retries_done), f"backoff, retry {retries_done + 1}", backoff=True)

    def pause(self, wait: Wait) -> None:
        """Sleep through ``wait`` using the injected sleep function."""
        if wait.seconds > 0:
            self.sleep(wait.seconds)


_LIMIT_HEADER = re.compile(r"^x-ia-(?P<name>[a-z0-9-]+?)-limit$", re.IGNORECASE)
_WINDOWS = (("minute", 60.0), ("hour", 3600.0))
PACE_FRACTION = 0.1
"""Start pacing when a rate limit's remaining count falls to this share of the limit."""
MAX_PACE_SECONDS = 30.0
"""Longest single pause pacing inserts (a throttle answer can still ask for more)."""


class Pacer:
    """Slows requests down *before* a rate limit answers 429, from Intacct's soft-limit headers.

    Intacct's soft limits add ``X-IA-<name>-Limit`` and ``X-IA-<name>-Limit-Remaining`` to
    answers (Sage's HTTP-headers guide): ``X-IA-Minute-Rate-Limit[-Remaining]``,
    ``X-IA-Hour-Rate-Limit[-Remaining]``, ``X-IA-Throttle-Limit[-Remaining]`` (concurrency)... A
    client that only reacts to the 429 spends a request on every refusal and, with several
    workers, hits the wall in bursts. When the remaining count of a windowed limit (minute,
    hour) falls to ``PACE_FRACTION`` of the limit, each further request is spaced by
    ``window / limit`` seconds, the steady rate the limit allows, so the remaining budget is
    spread over the window instead of exhausted at once. Concurrency limits have no window and
    are not paced here (the client's own ``max_concurrency`` bounds them). Thread-safe: the
    client's workers share one pacer, so the spacing holds across them.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._reason = ""
        self._spacing = 0.0

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read the limit headers of one answer and set the spacing for the next requests."""
        items = {name.lower(): value for name, value in _original_case_items(headers)}
        spacing, reason = 0.0, ""
        for name, value in items.items():
            match = _LIMIT_HEADER.match(name)
            if match is None:
                continue
            window = next((w for word, w in _WINDOWS if word in match.group("name")), None)
            remaining_raw = items.get(f"{name}-remaining")
            if window is None or remaining_raw is None:
                continue
            try:
                limit, remaining = int(value), int(remaining_raw)
            except ValueError:
                continue
            if limit <= 0 or remaining > max(1, int(limit * PACE_FRACTION)):
                continue
            candidate = window / limit
            if candidate > spacing:
                spacing = candidate
                reason = f"pacing: {name}-remaining {remaining} of {limit}"
        with self._lock:
            self._spacing, self._reason = spacing, reason

    def reserve(self, cap: float) -> Wait | None:
        """The pause this request must take before it is sent (None: go now); books its slot."""
        with self._lock:
            if self._spacing <= 0:
                return None
            now = self._clock()
            start = max(now, self._next_at)
            self._next_at = start + min(self._spacing, cap)
            delay = min(start - now, cap)
            if delay <= 0:
                return None
            return Wait(delay, self._reason)
