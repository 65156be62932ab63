"""Deleted-record detection: Intacct's query results carry no tombstones.

Two strategies (setting ``deletes``), with their API cost:

``keyscan``
    After the normal read of a stream (per entity), read every key: ``fields: ["key"]``, 4000 a
    page, keyset-paged, i.e. ``ceil(N/4000)`` extra query calls of small responses. Keys that
    were present at the previous run and are gone now were deleted. The key set is kept in the
    stream's state as compact ranges (``"1-5000,5002-9000"``) for integer keys, a plain list
    otherwise. A full-table read already sees every key, so it needs no extra scan; the first
    run of a stream only records the keys.
``audit``
    Read ``company-config/audit-history`` for delete events on the object since the last run
    (usually one query call per stream and entity). Needs the audit-trail permission; when the
    API refuses, the tap logs one warning saying deletes are not being detected and carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from intacct_api.errors import IntacctAPIError
from intacct_api.pager import MAX_PAGE_SIZE, QueryClient, QueryPager

__all__ = [
    "AUDIT_OBJECT",
    "AuditRefusedError",
    "audit_deletions",
    "decode_keys",
    "encode_keys",
    "scan_keys",
]

logger = logging.getLogger(__name__)

AUDIT_OBJECT = "company-config/audit-history"
_AUDIT_TIME = "changeSource.accessDateTime"
_AUDIT_OBJECT_ID = "changeDetails.objectId"


class AuditRefusedError(Exception):
    """The audit trail cannot be read with these credentials (carries the API error)."""

    def __init__(self, error: IntacctAPIError) -> None:
        super().__init__(str(error))
        self.error = error


def encode_keys(keys: Iterable[str]) -> dict[str, Any]:
    """Compact, JSON-ready form of a key set for the state.

    Intacct keys are decimal record numbers, mostly dense, so ranges are tiny; anything else
    (opaque keys) is stored as a sorted list.
    """
    items = set(keys)
    if items and all(k.isdigit() and (k == "0" or not k.startswith("0")) for k in items):
        numbers = sorted(int(k) for k in items)
        parts: list[str] = []
        start = prev = numbers[0]
        for n in numbers[1:]:
            if n == prev + 1:
                prev = n
                continue
            parts.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = n
        parts.append(f"{start}-{prev}" if prev != start else str(start))
        return {"ranges": ",".join(parts), "count": len(numbers)}
    return {"keys": sorted(items), "count": len(items)}


def decode_keys(stored: Mapping[str, Any] | None) -> set[str]:
    """The key set :func:`encode_keys` stored (empty for nothing stored)."""
    if not stored:
        return set()
    if "ranges" in stored:
        keys: set[str] = set()
        text = str(stored["ranges"])
        for part in text.split(",") if text else ():
            first, _, last = part.partition("-")
            keys.update(str(n) for n in range(int(first), int(last or first) + 1))
        return keys
    return {str(k) for k in stored.get("keys") or ()}


def scan_keys(
    client: QueryClient, object_name: str, *, entity: Any, include_private: bool
) -> tuple[set[str], QueryPager]:
    """Every current key of an object (keyset-paged on key, 4000 a page)."""
    pager = QueryPager(
        client,
        object_name,
        ["key"],
        page_size=MAX_PAGE_SIZE,
        include_private=include_private,
        entity=entity,
        timestamp_field=None,
    )
    keys = {str(row["key"]) for page in pager for row in page if row.get("key") is not None}
    return keys, pager


def audit_deletions(
    client: QueryClient,
    object_name: str,
    *,
    since: str | None,
    entity: Any,
    include_private: bool,
) -> Iterator[tuple[str, str | None]]:
    """``(key, deleted_at)`` of the object's delete events in the audit trail since ``since``.

    Raises :class:`AuditRefusedError` when the API refuses the audit trail (permission, missing
    subscription, an object the audit service does not know).
    """
    filters: list[dict[str, Any]] = [
        {"$eq": {"changeDetails.objectName": object_name}},
        {"$eq": {"changeSource.actionPerformed": "delete"}},
    ]
    if since:
        filters.append({"$gte": {_AUDIT_TIME: since}})
    pager = QueryPager(
        client,
        AUDIT_OBJECT,
        [_AUDIT_OBJECT_ID, _AUDIT_TIME],
        filters=filters,
        page_size=MAX_PAGE_SIZE,
        include_private=include_private,
        entity=entity,
        timestamp_field=_AUDIT_TIME,
    )
    try:
        for page in pager:
            for row in page:
                key = row.get(_AUDIT_OBJECT_ID)
                if key is not None:
                    yield str(key), row.get(_AUDIT_TIME)
    except IntacctAPIError as exc:
        if exc.status in (400, 401, 403, 404, 405, 422):
            raise AuditRefusedError(exc) from exc
        raise
