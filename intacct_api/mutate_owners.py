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

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from intacct_api.mutate_upsert import lookup_values
from intacct_api.mutate_validation import member_of

if TYPE_CHECKING:
    from intacct_api.client import IntacctClient
    from intacct_api.mutate_plan import PreparedItem
    from intacct_api.spec import ObjectInfo

__all__ = ["DOCUMENT_TYPE", "document_name_of", "lookup_members"]

DOCUMENT_TYPE = "documentType"
"""The member of a document (and of a back-reference to one) naming its transaction
definition: the ``documentName`` of its paths (the spec's examples agree: ``Sales Invoice``)."""


def lookup_members(
    client: IntacctClient,
    info: ObjectInfo,
    keys: Iterable[str],
    member: str,
    entity: str | None,
) -> dict[str, str]:
    """``member`` of each record of ``info`` by key (records not found, or whose member is
    empty, are absent): one ``key in [...]`` query, paged only beyond 4,000 rows."""
    found: dict[str, str] = {}
    wanted = sorted(set(keys))
    for key, value in lookup_values(
        client, info, where="key", values=wanted, member=member, entity=entity
    ):
        if value not in (None, "") and key is not None:
            found[str(key)] = str(value)
    return found


def document_name_of(info: ObjectInfo, prepared: Sequence[PreparedItem]) -> str | None:
    """The transaction definition the input lines name through their back-reference
    (``documentHeader.documentType``), when they all name the same one."""
    back_ref = info.owner_reference
    names: set[str] = set()
    for item in prepared:
        record = getattr(item.source, "record", None)
        value = member_of(record, f"{back_ref}.{DOCUMENT_TYPE}")
        if value in (None, ""):
            return None
        names.add(str(value))
    return names.pop() if len(names) == 1 else None
