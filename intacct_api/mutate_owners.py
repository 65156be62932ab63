"""Look-ups a line write needs before its owner's PATCH can be built.

Two facts Intacct's write paths need that a line record may not carry:

* the owner of its owner, when the owner is itself a line (a journal-entry tax entry is
  written inside its journal entry's element for the journal-entry line): one query of the
  owner-line object per batch, ``key in [...]``, fields ``key`` and the owner line's
  back-reference ``.key`` (:attr:`ObjectInfo.owner_reference`);
* the transaction definition of a document (``order-entry/document::Sales Invoice/41``):
  taken from the line's back-reference (``documentHeader.documentType``) when given, else one
  query of the document object, fields ``key`` and ``documentType`` (FIDELITY W18).

Both are reads: a failing look-up leaves its lines ``error`` (nothing was written).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from intacct_api.client import DEFAULT_ENTITY
from intacct_api.mutate_validation import dig

if TYPE_CHECKING:
    from intacct_api.client import IntacctClient
    from intacct_api.mutate_plan import PreparedItem
    from intacct_api.spec import ObjectInfo

__all__ = ["DOCUMENT_TYPE", "document_name_of", "lookup_members"]

DOCUMENT_TYPE = "documentType"
"""The member of a document (and of a back-reference to one) naming its transaction
definition: the ``documentName`` of its paths (the spec's examples agree: ``Sales Invoice``)."""
_PAGE_SIZE = 4000


def lookup_members(
    client: IntacctClient,
    info: ObjectInfo,
    keys: Iterable[str],
    member: str,
    entity: str | None,
) -> dict[str, str]:
    """``member`` of each record of ``info`` by key (records not found, or whose member is
    empty, are absent): one ``key in [...]`` query, paged only beyond 4,000 rows."""
    wanted = sorted(set(keys))
    found: dict[str, str] = {}
    if not wanted:
        return found
    start: int | None = 1
    while start is not None:
        body = {
            "object": info.name,
            "fields": ["key", member],
            "filters": [{"$in": {"key": wanted}}],
            "orderBy": [{"key": "asc"}],
            "start": start,
            "size": _PAGE_SIZE,
        }
        payload = client.query(body, entity=entity if entity is not None else DEFAULT_ENTITY).json()
        for row in payload.get("ia::result") or ():
            value = _member(row, member)
            if value not in (None, "") and row.get("key") is not None:
                found[str(row["key"])] = str(value)
        next_start = (payload.get("ia::meta") or {}).get("next")
        start = int(next_start) if next_start else None
    return found


def document_name_of(info: ObjectInfo, prepared: Sequence[PreparedItem]) -> str | None:
    """The transaction definition the input lines name through their back-reference
    (``documentHeader.documentType``), when they all name the same one."""
    back_ref = info.owner_reference
    names: set[str] = set()
    for item in prepared:
        record = getattr(item.source, "record", None)
        value = _member(record, f"{back_ref}.{DOCUMENT_TYPE}") if record is not None else None
        if value in (None, ""):
            return None
        names.add(str(value))
    return names.pop() if len(names) == 1 else None


def _member(row: Any, member: str) -> Any:
    if not isinstance(row, Mapping):
        return None
    value = row.get(member)
    return dig(row, member) if value is None else value
