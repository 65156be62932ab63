"""`Idempotency-Key` support for POST/PATCH, as Intacct documents it.

A client that lost a response (timeout, dropped connection) retries with the same key and must
get the first result instead of a second write; reusing a key for a different body is a client
bug and answers 409. Entries are keyed by (client id, key) and hold a fingerprint of the request
(method, path, entity, transaction flag, body bytes) plus the stored response.

Entries live in memory and, when the company's database is a file, also in a table of that file
(`emulator_idempotency`), so a retry across an emulator restart still replays. Results are kept
48 hours, as Intacct does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import time
from dataclasses import dataclass

MAX_KEY_LENGTH = 256
RESULT_TTL = 48 * 3600.0


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

    def __init__(self, db: str | None = None) -> None:
        self._entries: dict[tuple[str, str], StoredResponse | InFlight] = {}
        self._conn: sqlite3.Connection | None = None
        if db is not None and _is_file_db(db):
            self._conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS emulator_idempotency ("
                " client TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,"
                " status INTEGER NOT NULL, body BLOB NOT NULL, content_type TEXT NOT NULL,"
                " cached_date TEXT NOT NULL, created REAL NOT NULL,"
                " PRIMARY KEY (client, key))"
            )

    def begin(self, client: str, key: str) -> StoredResponse | InFlight | None:
        """Look the key up; when unknown, mark it in flight and return None (caller runs)."""
        entry = self._entries.get((client, key)) or self._load(client, key)
        if isinstance(entry, StoredResponse) and entry.created + RESULT_TTL < time.time():
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
        now = time.time()
        stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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
