"""Upsert: look the batch's natural keys up in one query, then one create and one update.

A record carrying ``key`` is an update without a look-up. The others are found by
``match_on`` (default ``id``) with one ``$in`` query per request-sized chunk (paged only
beyond 4,000 rows); a value matching several records is refused rather than guessed. The
bodies were prepared at planning time both ways, so nothing is validated here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from intacct_api.client import DEFAULT_ENTITY
from intacct_api.errors import IntacctError
from intacct_api.mutate_plan import PreparedItem, Task
from intacct_api.mutate_results import ItemOutcome, ItemResult, outcome_from_exception
from intacct_api.mutate_send import Outcomes, RequestSender
from intacct_api.mutate_validation import member_of

if TYPE_CHECKING:
    from intacct_api.client import IntacctClient
    from intacct_api.spec import ObjectInfo

__all__ = ["LOOKUP_PAGE_SIZE", "lookup_keys", "lookup_values", "run_upsert", "upsert_route"]

logger = logging.getLogger("intacct_api.mutate")

LOOKUP_PAGE_SIZE = 4000


def run_upsert(sender: RequestSender, info: ObjectInfo, task: Task, match_on: str) -> Outcomes:
    """Look up, split into creates and updates, send both."""
    values = sorted(
        {str(p.match_value) for p in task.items if p.key is None and p.match_value is not None}
    )
    try:
        existing = lookup_keys(sender.client, info, match_on, values, task.entity)
    except Exception as exc:
        if not isinstance(exc, IntacctError):
            logger.exception("unexpected failure looking up %s", info.name)
        failed = outcome_from_exception(exc)
        failed.error = f"upsert lookup by {match_on!r} failed: {failed.error}"
        return {p.pos: ItemResult("upsert", failed, p.body) for p in task.items}
    creates: list[PreparedItem] = []
    updates: list[PreparedItem] = []
    out: Outcomes = {}
    for prepared in task.items:
        route = upsert_route(prepared, existing, match_on)
        if isinstance(route, ItemResult):
            out[prepared.pos] = route
        elif route == "update":
            updates.append(prepared)
        else:
            prepared.body = prepared.create_body or {}
            creates.append(prepared)
    if creates:
        out.update(sender.send(info, "create", task.entity, creates))
    if updates:
        out.update(sender.send(info, "update", task.entity, updates))
    return out


def upsert_route(
    prepared: PreparedItem, existing: Mapping[str, list[str]], match_on: str
) -> str | ItemResult:
    """Where one upsert record goes after the look-up: ``"update"`` (it now carries the key
    it was found under), ``"create"`` (its planned create body is valid), or the failed
    result (several records match, or it is new but not a valid create)."""
    if prepared.key is not None:  # carried its key: an update, no look-up needed
        return "update"
    keys = existing.get(str(prepared.match_value), []) if prepared.match_value else []
    if len(keys) > 1:
        ambiguous = ItemOutcome(
            ok=False,
            error=f"field '{match_on}': {len(keys)} existing records match "
            f"{prepared.match_value!r} (keys {', '.join(keys)}); cannot choose",
            error_code="ambiguousMatch",
        )
        return ItemResult("upsert", ambiguous, prepared.body)
    if keys:
        prepared.key = keys[0]
        prepared.body = {"key": keys[0], **prepared.body}
        return "update"
    if prepared.create_body is None:  # new, and not a valid create (planning said why)
        invalid = ItemOutcome(
            ok=False, error=prepared.create_error or "invalid", error_code="invalidRecord"
        )
        return ItemResult("create", invalid, prepared.body)
    return "create"


def lookup_keys(
    client: IntacctClient,
    info: ObjectInfo,
    match_on: str,
    values: Sequence[str],
    entity: str | None,
) -> dict[str, list[str]]:
    """Existing keys by match value: one `$in` query (paged only beyond 4,000 rows)."""
    found: dict[str, list[str]] = {}
    for key, value in lookup_values(
        client, info, where=match_on, values=values, member=match_on, entity=entity
    ):
        if value is not None and key is not None:
            found.setdefault(str(value), []).append(str(key))
    return found


def lookup_values(
    client: IntacctClient,
    info: ObjectInfo,
    *,
    where: str,
    values: Sequence[str],
    member: str,
    entity: str | None,
) -> Iterator[tuple[Any, Any]]:
    """``(key, member)`` of each record of ``info`` whose ``where`` is one of ``values``
    (``member`` may be dotted: ``bill.key``): one `$in` query ordered by key, paged only beyond
    4,000 rows. The one look-up of the write path (upsert matches, owners of lines, documents'
    definitions)."""
    if not values:
        return
    start: int | None = 1
    while start is not None:
        body = {
            "object": info.name,
            "fields": ["key", member],
            "filters": [{"$in": {where: list(values)}}],
            "orderBy": [{"key": "asc"}],
            "start": start,
            "size": LOOKUP_PAGE_SIZE,
        }
        payload = client.query(body, entity=entity if entity is not None else DEFAULT_ENTITY).json()
        for row in payload.get("ia::result") or ():
            if isinstance(row, Mapping):
                yield row.get("key"), member_of(row, member)
        next_start = (payload.get("ia::meta") or {}).get("next")
        start = int(next_start) if next_start else None
