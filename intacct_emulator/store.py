"""SQLite storage for emulated records: one row per (object, key), JSON body plus index columns.

Why this layout: the query service must page 4,000 records out of a million in a few tens of
milliseconds, and the common incremental query filters and sorts on ``key``, ``id`` and
``audit.modifiedDateTime``. Those are copied into indexed columns; everything else lives in the
JSON body (stored sparse: unset members are absent and the read path fills in ``null``s).
A file path makes data survive a restart (a demo loads, stops, starts and reads it back);
``":memory:"`` is for tests.

Next to the nested body (``data``, the source of truth for GET-by-key and writes) each row holds
``flat``: the record's leaves as one flat JSON object keyed by dotted path (the query service's
output shape), written with the body on every write path. A query page decodes those straight
into a per-query-shape struct and re-encodes them (see :mod:`query_engine`), without walking
nested dicts in Python. ``flat`` may be NULL: databases written before the column existed get
it added on open (``ALTER TABLE``, instant) and filled lazily, page by page, the first time a
query reads a row; a trigger nulls it whenever ``data`` is rewritten without it (by an older
version of the emulator), so it can never be stale.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
Flattener = Callable[[str, dict[str, Any]], bytes]
"""(object name, record body) -> the ``flat`` column's value."""
_decoder = msgspec.json.Decoder()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    object   TEXT NOT NULL,
    key      INTEGER NOT NULL,
    entity   TEXT,
    id       TEXT,
    modified TEXT,
    parent   INTEGER,
    data     BLOB NOT NULL,
    flat     BLOB,
    PRIMARY KEY (object, key)
);
CREATE INDEX IF NOT EXISTS records_id_v2 ON records (object, id, key, entity);
CREATE INDEX IF NOT EXISTS records_modified_v2 ON records (object, modified, key, entity);
CREATE INDEX IF NOT EXISTS records_key_v2 ON records (object, key, entity, id);
CREATE INDEX IF NOT EXISTS records_parent ON records (object, parent);
CREATE TRIGGER IF NOT EXISTS records_flat_stale AFTER UPDATE OF data ON records
WHEN NEW.flat IS OLD.flat AND NEW.flat IS NOT NULL
BEGIN
    UPDATE records SET flat = NULL WHERE object = NEW.object AND key = NEW.key;
END;
CREATE TABLE IF NOT EXISTS counters (
    object   TEXT PRIMARY KEY,
    last_key INTEGER NOT NULL
);
"""


def encode(record: dict[str, Any]) -> bytes:
    """Serialise a record body (msgspec: the hot path of seeding and writes)."""
    return _encoder.encode(record)


def decode(data: bytes) -> dict[str, Any]:
    """Parse a stored record body."""
    result: dict[str, Any] = _decoder.decode(data)
    return result


def decode_many(blobs: list[bytes]) -> list[dict[str, Any]]:
    """Parse many stored bodies with one decoder call (a query page: thousands of rows)."""
    if not blobs:
        return []
    result: list[dict[str, Any]] = _decoder.decode(b"[" + b",".join(blobs) + b"]")
    return result


@dataclass(frozen=True)
class StoredRow:
    """One stored record with its index columns (entity ``None`` = top level, shared)."""

    object: str
    key: int
    entity: str | None
    id: str | None
    modified: str | None
    parent: int | None
    data: bytes
    flat: bytes | None = None  # computed from ``data`` on write when not given

    def record(self) -> dict[str, Any]:
        """The decoded (sparse) record body."""
        return decode(self.data)


Row = tuple[str, int, str | None, str | None, str | None, int | None, bytes, bytes | None]
"""``insert_many`` rows: the StoredRow fields in order (``flat`` None = computed from data)."""


def _no_flat(object_name: str, record: dict[str, Any]) -> bytes:
    raise RuntimeError("Store.flattener is not set")


class Store:
    """Thin, synchronous wrapper around one SQLite connection.

    Callers (``Company``) serialise access with their own lock; the connection is shared
    across the HTTP server's worker threads, hence ``check_same_thread=False``.
    """

    def __init__(self, path: str = ":memory:", flattener: Flattener = _no_flat) -> None:
        self.path = path
        self.flattener = flattener
        self._version = 0  # bumped by every write of this connection (count cache)
        self._counts: dict[tuple[Any, ...], tuple[tuple[int, int], int]] = {}
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA temp_store = MEMORY")
        self._conn.execute("PRAGMA cache_size = -200000")
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(records)")}
        if columns and "flat" not in columns:
            # a database from before the flat column: add it (instant); rows fill lazily
            self._conn.execute("ALTER TABLE records ADD COLUMN flat BLOB")
        self._conn.executescript(_SCHEMA)
        self._depth = 0
        self._lock = threading.RLock()

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All-or-nothing block; nests through savepoints (a batch inside a transaction)."""
        with self._lock:
            name = f"sp{self._depth}"
            self._conn.execute(f"SAVEPOINT {name}")
            self._depth += 1
            try:
                yield
            except BaseException:
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
                raise
            else:
                self._conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1

    def close(self) -> None:
        """Close the connection (a file database stays on disk)."""
        self._conn.close()

    def reset(self) -> None:
        """Drop every record and key counter."""
        self._version += 1
        with self.transaction():
            self._conn.execute("DELETE FROM records")
            self._conn.execute("DELETE FROM counters")

    # -- keys ---------------------------------------------------------------------------------

    def allocate_keys(self, object_name: str, count: int) -> int:
        """Reserve ``count`` sequential keys; returns the first. Rolled back with the batch."""
        cur = self._conn.execute(
            "INSERT INTO counters (object, last_key) VALUES (?, ?) "
            "ON CONFLICT(object) DO UPDATE SET last_key = last_key + excluded.last_key "
            "RETURNING last_key",
            (object_name, count),
        )
        last = int(cur.fetchone()[0])
        return last - count + 1

    # -- writes -------------------------------------------------------------------------------

    def _flat(self, object_name: str, data: bytes, flat: bytes | None) -> bytes:
        return flat if flat is not None else self.flattener(object_name, decode(data))

    def insert(self, row: StoredRow) -> None:
        """Insert one record."""
        self._version += 1
        self._conn.execute(
            "INSERT INTO records (object, key, entity, id, modified, parent, data, flat) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.object,
                row.key,
                row.entity,
                row.id,
                row.modified,
                row.parent,
                row.data,
                self._flat(row.object, row.data, row.flat),
            ),
        )

    def insert_many(self, rows: Iterable[Row]) -> None:
        """Bulk insert (seeding): one ``executemany`` inside the caller's transaction."""
        self._version += 1
        flat = self._flat
        self._conn.executemany(
            "INSERT INTO records (object, key, entity, id, modified, parent, data, flat) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (r if r[7] is not None else (*r[:7], flat(r[0], r[6], None)) for r in rows),
        )

    def replace(self, row: StoredRow) -> None:
        """Overwrite an existing record's columns and body."""
        self._version += 1
        self._conn.execute(
            "UPDATE records SET entity = ?, id = ?, modified = ?, parent = ?, data = ?, flat = ? "
            "WHERE object = ? AND key = ?",
            (
                row.entity,
                row.id,
                row.modified,
                row.parent,
                row.data,
                self._flat(row.object, row.data, row.flat),
                row.object,
                row.key,
            ),
        )

    def delete(self, object_name: str, key: int) -> bool:
        """Delete one record; False when it did not exist."""
        self._version += 1
        cur = self._conn.execute(
            "DELETE FROM records WHERE object = ? AND key = ?", (object_name, key)
        )
        return cur.rowcount > 0

    # -- reads --------------------------------------------------------------------------------

    def get(self, object_name: str, key: int) -> StoredRow | None:
        """One record by key, or None."""
        cur = self._conn.execute(
            "SELECT object, key, entity, id, modified, parent, data FROM records "
            "WHERE object = ? AND key = ?",
            (object_name, key),
        )
        found = cur.fetchone()
        return StoredRow(*found) if found else None

    def key_for_id(self, object_name: str, record_id: str) -> int | None:
        """The key of the record with this ``id`` (ids are unique per object)."""
        cur = self._conn.execute(
            "SELECT key FROM records WHERE object = ? AND id = ? LIMIT 1", (object_name, record_id)
        )
        found = cur.fetchone()
        return int(found[0]) if found else None

    def children(self, object_name: str, parent: int) -> list[StoredRow]:
        """Owned records (lines) of one owner record, in key order."""
        cur = self._conn.execute(
            "SELECT object, key, entity, id, modified, parent, data FROM records "
            "WHERE object = ? AND parent = ? ORDER BY key",
            (object_name, parent),
        )
        return [StoredRow(*r) for r in cur.fetchall()]

    def select(
        self,
        object_name: str,
        where: Sequence[str],
        params: Sequence[Any],
        *,
        order: str = "key",
        limit: int | None = None,
        offset: int = 0,
        columns: str = "key, entity, data",
    ) -> list[tuple[Any, ...]]:
        """Rows of one object matching SQL conditions on the index columns."""
        sql = f"SELECT {columns} FROM records WHERE object = ?"  # noqa: S608 - fixed fragments
        for condition in where:
            sql += f" AND ({condition})"
        sql += f" ORDER BY {order}"
        args: list[Any] = [object_name, *params]
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return self._conn.execute(sql, args).fetchall()

    def page(
        self,
        object_name: str,
        where: Sequence[str],
        params: Sequence[Any],
        *,
        order: str,
        limit: int,
        offset: int,
    ) -> list[bytes]:
        """Bodies of one page, in order, for conditions/order on index columns only."""
        rows = self._page_column(object_name, where, params, "data", order, limit, offset)
        return [value for value, _ in rows]

    def flat_page(
        self,
        object_name: str,
        where: Sequence[str],
        params: Sequence[Any],
        *,
        order: str,
        limit: int,
        offset: int,
    ) -> list[bytes]:
        """The ``flat`` forms of one page, in order (same selection rules as :meth:`page`).

        Rows whose ``flat`` is still NULL (a database from an older version) get it computed
        from their body here and written back, so each row pays that once.
        """
        rows = self._page_column(object_name, where, params, "flat", order, limit, offset)
        missing = [key for flat, key in rows if flat is None]
        if not missing:
            return [flat for flat, _ in rows]
        filled = self._backfill(object_name, missing)
        return [flat if flat is not None else filled[key] for flat, key in rows]

    def _page_column(
        self,
        object_name: str,
        where: Sequence[str],
        params: Sequence[Any],
        column: str,
        order: str,
        limit: int,
        offset: int,
    ) -> list[tuple[Any, int]]:
        """``(column value, key)`` of one page's rows, in order.

        Near the start (every keyset page) one statement, the index serving the order. Deep in
        the table, two steps so the ``OFFSET`` walks a covering index instead of reading (and
        skipping) tens of thousands of rows: page keys first, then their values.
        """
        if offset < limit:
            found = self.select(
                object_name,
                where,
                params,
                order=order,
                limit=limit,
                offset=offset,
                columns=f"{column}, key",
            )
            return [(value, key) for value, key in found]
        keys = [
            row[0]
            for row in self.select(
                object_name, where, params, order=order, limit=limit, offset=offset, columns="key"
            )
        ]
        values: dict[int, Any] = {}
        for chunk in _chunks(keys):
            marks = ", ".join("?" for _ in chunk)
            cur = self._conn.execute(
                f"SELECT key, {column} FROM records WHERE object = ? AND key IN ({marks})",  # noqa: S608
                [object_name, *chunk],
            )
            values.update(cur.fetchall())
        return [(values[key], key) for key in keys]

    def _backfill(self, object_name: str, keys: list[int]) -> dict[int, bytes]:
        """Compute (and store, best effort) the ``flat`` form of rows that lack it."""
        filled: dict[int, bytes] = {}
        for chunk in _chunks(keys):
            marks = ", ".join("?" for _ in chunk)
            cur = self._conn.execute(
                f"SELECT key, data FROM records WHERE object = ? AND key IN ({marks})",  # noqa: S608
                [object_name, *chunk],
            )
            for key, data in cur.fetchall():
                filled[key] = self.flattener(object_name, decode(data))
        try:
            with self.transaction():
                self._conn.executemany(
                    "UPDATE records SET flat = ? WHERE object = ? AND key = ? AND flat IS NULL",
                    [(flat, object_name, key) for key, flat in filled.items()],
                )
        except sqlite3.OperationalError:
            pass  # read-only or busy database: serve the computed values, store them later
        return filled

    def count(self, object_name: str, where: Sequence[str], params: Sequence[Any]) -> int:
        """How many rows match (the query service's ``totalCount``).

        Cached per (object, conditions, parameters) until the data changes: this connection's
        own writes bump ``_version``; ``PRAGMA data_version`` changes when another connection
        (process) commits. Offset paging asks the same count on every page.
        """
        sql = "SELECT COUNT(*) FROM records WHERE object = ?"
        for condition in where:
            sql += f" AND ({condition})"
        args = (object_name, *params)
        version = (self._version, int(self._conn.execute("PRAGMA data_version").fetchone()[0]))
        cache_key = (sql, args)
        try:
            cached = self._counts.get(cache_key)
        except TypeError:  # an unhashable parameter: no caching
            return int(self._conn.execute(sql, args).fetchone()[0])
        if cached is not None and cached[0] == version:
            return cached[1]
        total = int(self._conn.execute(sql, args).fetchone()[0])
        if len(self._counts) >= 256:
            self._counts.clear()
        self._counts[cache_key] = (version, total)
        return total

    def max_modified(self) -> str | None:
        """Latest stored ``audit.modifiedDateTime`` (the clock must never go below it)."""
        found = self._conn.execute("SELECT MAX(modified) FROM records").fetchone()
        return found[0] if found else None

    def objects_with_data(self) -> list[str]:
        """Names of objects that have at least one record."""
        return [r[0] for r in self._conn.execute("SELECT DISTINCT object FROM records")]


def _chunks(keys: list[int], size: int = 900) -> Iterator[list[int]]:
    """``keys`` in slices small enough for SQLite's bound-parameter limit."""
    for start in range(0, len(keys), size):
        yield keys[start : start + size]
