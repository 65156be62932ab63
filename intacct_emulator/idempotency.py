"""`Idempotency-Key` support for POST/PATCH, as Intacct documents it.

A client that lost a response (timeout, dropped connection) retries with the same key and must
get the first result instead of a second write. Sage's batch guide: the result is cached for
48 hours (a replay carries `x-ia-idempotency-cached-date`), the key is remembered for 60 days,
reusing it with a different body in that time answers 409, and concurrent duplicates answer an
error. Entries are keyed by (client id, key) and hold a fingerprint of the request (method,
path, entity, transaction flag, body bytes) plus the stored response.

Not documented, so switchable (`after_result_ttl`): what the same key with the *same* body gets
between 48 hours and 60 days. ``conflict`` (default) answers 409, the key being remembered;
``execute`` runs the request again as new. A client must be right under either: it must never
re-send a key once the replay window may have passed.

Entries live in memory and, when the company's database is a file, also in a table of that file
(`emulator_idempotency`), so a retry across an emulator restart still replays. Time is the
emulator's clock (`intacct_emulator.emulated_time`), which tests move across the 48-hour and 60-day
marks.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass

from intacct_emulator.emulated_time import EmulatorClock

MAX_KEY_LENGTH = 256
RESULT_TTL = 48 * 3600.0
"""Seconds a stored result is replayed."""
KEY_TTL = 60 * 24 * 3600.0
"""Seconds a key is remembered (a different body within them answers 409)."""
AFTER_RESULT_TTL_MODES = ("conflict", "execute")


@dataclass(frozen=True)
class StoredResponse:
    """A cached first response, replayed byte for byte."""

    fingerprint: str
    status: int
    body: bytes
    content_type: str
    cached_date: str  # ISO-8601 UTC, echoed in `x-ia-idempotency-cached-date`
    created: float


class InFlight:
    """Marker for a key whose first request has not finished yet (concurrent duplicate)."""


@dataclass(frozen=True)
class Expired:
    """A known key whose result is no longer replayed (48 hours < age <= 60 days)."""

    stored: StoredResponse


def fingerprint(method: str, path: str, entity: str | None, transaction: bool, body: bytes) -> str:
    """What makes two requests "the same" for a key; any difference means 409."""
    digest = hashlib.sha256()
    for part in (method, path, entity or "", "1" if transaction else "0"):
        digest.update(part.encode())
        digest.update(b"\x00")
    digest.update(body)
    return digest.hexdigest()


def _is_file_db(db: str | None) -> bool:
    return bool(db) and db != ":memory:" and not str(db).startswith("file:")


class IdempotencyCache:
    """Memory first, SQLite file second; used only from the event loop thread."""

    def __init__(self, db: str | None = None, clock: EmulatorClock | None = None) -> None:
        self._entries: dict[tuple[str, str], StoredResponse | InFlight] = {}
        self._conn: sqlite3.Connection | None = None
        self.clock = clock or EmulatorClock()
        self.after_result_ttl = "conflict"
        if db is not None and _is_file_db(db):
            self._conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS emulator_idempotency ("
                " client TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,"
                " status INTEGER NOT NULL, body BLOB NOT NULL, content_type TEXT NOT NULL,"
                " cached_date TEXT NOT NULL, created REAL NOT NULL,"
                " PRIMARY KEY (client, key))"
            )

    def configure(self, options: dict[str, object]) -> None:
        """Set the switchable behaviour (``after_result_ttl``); raises ValueError when unknown."""
        unknown = set(options) - {"after_result_ttl"}
        if unknown:
            raise ValueError(f"unknown idempotency option(s): {', '.join(sorted(unknown))}")
        mode = options.get("after_result_ttl", self.after_result_ttl)
        if mode not in AFTER_RESULT_TTL_MODES:
            raise ValueError(f"after_result_ttl must be one of {AFTER_RESULT_TTL_MODES}")
        self.after_result_ttl = str(mode)

    def snapshot(self) -> dict[str, object]:
        """The switchable behaviour and the windows, for the control route."""
        return {
            "after_result_ttl": self.after_result_ttl,
            "result_ttl_seconds": RESULT_TTL,
            "key_ttl_seconds": KEY_TTL,
            "keys": len(self._entries),
        }

    def begin(
        self, client: str, key: str, fp: str | None = None
    ) -> StoredResponse | InFlight | Expired | None:
        """Look the key up; when unknown (or forgotten), mark it in flight and return None.

        A stored result younger than 48 hours is returned for replay; one between 48 hours and
        60 days comes back as :class:`Expired` (the caller answers 409), except that the same
        request (``fp``) runs again when ``after_result_ttl`` is ``execute``; an older one is
        forgotten.
        """
        entry = self._entries.get((client, key)) or self._load(client, key)
        if isinstance(entry, StoredResponse):
            age = self.clock.now() - entry.created
            if age > KEY_TTL:
                entry = None
            elif age > RESULT_TTL:
                same_request = fp is not None and fp == entry.fingerprint
                if not same_request or self.after_result_ttl == "conflict":
                    return Expired(entry)  # another body is always a 409 within 60 days
                entry = None
        if entry is not None:
            return entry
        self._entries[(client, key)] = InFlight()
        return None

    def finish(
        self, client: str, key: str, *, fp: str, status: int, body: bytes, content_type: str
    ) -> None:
        """Store the first response; 5xx/429/409 are not stored so a retry runs again."""
        if status >= 500 or status in (409, 429):
            self.abandon(client, key)
            return
        now = self.clock.now()
        stamp = self.clock.iso(now)
        stored = StoredResponse(fp, status, body, content_type, stamp, now)
        self._entries[(client, key)] = stored
        if self._conn is not None:
            self._conn.execute(
                "INSERT OR REPLACE INTO emulator_idempotency VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (client, key, fp, status, body, content_type, stored.cached_date, now),
            )

    def abandon(self, client: str, key: str) -> None:
        """Forget an in-flight key whose request failed before producing a cacheable result."""
        self._entries.pop((client, key), None)

    def reset(self) -> None:
        self._entries.clear()
        self.clock.reset()
        self.after_result_ttl = "conflict"
        if self._conn is not None:
            self._conn.execute("DELETE FROM emulator_idempotency")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _load(self, client: str, key: str) -> StoredResponse | None:
        if self._conn is None:
            return None
        row = self._conn.execute(
            "SELECT fingerprint, status, body, content_type, cached_date, created"
            " FROM emulator_idempotency WHERE client = ? AND key = ?",
            (client, key),
        ).fetchone()
        if row is None:
            return None
        stored = StoredResponse(row[0], row[1], bytes(row[2]), row[3], row[4], row[5])
        self._entries[(client, key)] = stored
        return stored
