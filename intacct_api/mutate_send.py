"""Sending one write request and reading what Intacct said about each of its records.

The request's Idempotency-Key comes from a :class:`~intacct_api.write_journal.KeySource`
(fresh per write; re-sent only for crash reruns); DELETE carries none. The answer becomes one
:class:`~intacct_api.mutate_results.ItemResult` per record, by position. Three answers are
handled here because only the sender can act on them:

* a multi-record request refused as a whole (400, no record named) is bisected and re-sent,
  within a budget, so one bad record fails alone;
* a 429 saying the request is too large shrinks the object's batch size for the rest of the
  run and re-sends in smaller requests;
* a write whose earlier attempt may have executed ends ``unknown``, never ``error``
  (``outcome_unknown`` on the client's error); a replayed answer is marked ``replayed``.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from intacct_api.client import DEFAULT_ENTITY, encode_path_value
from intacct_api.errors import IntacctAPIError, IntacctError
from intacct_api.mutate_plan import PreparedItem
from intacct_api.mutate_results import (
    ItemOutcome,
    ItemResult,
    is_whole_request_error,
    outcome_from_exception,
    outcomes_from_response,
)
from intacct_api.write_journal import KeySource, request_fingerprint

if TYPE_CHECKING:
    from intacct_api.client import IntacctClient
    from intacct_api.spec import ObjectInfo, SpecRegistry

__all__ = ["CACHED_DATE_HEADER", "MAX_ISOLATION_REQUESTS", "Outcomes", "RequestSender"]

logger = logging.getLogger("intacct_api.mutate")

Outcomes = dict[int, ItemResult]
"""Results of sent records by their position in the plan's window."""

BODY_ENCODER = msgspec.json.Encoder(order="sorted", decimal_format="number")
"""Request bodies: keys sorted (a rerun of the same input builds the same bytes, which is how
the write journal recognises an interrupted request), ``Decimal`` amounts as exact JSON
numbers."""
MAX_ISOLATION_REQUESTS = 64
"""Requests one rejected batch may be split into while isolating the records that made
Intacct refuse it as a whole (one bad record among 500 costs about 2 x log2(500) = 18)."""
CACHED_DATE_HEADER = "x-ia-idempotency-cached-date"
"""Sent by Intacct when it answers from its idempotency cache instead of executing."""
_SINGLE_STATUSES = (200, 201, 204, 207)
_BATCH_STATUSES = (*_SINGLE_STATUSES, 400, 404, 409, 422)
_NOT_FOUND_CODES = frozenset({"404", "REST-1050", "notFound"})


class RequestSender:
    """Write requests for one client (thread-safe)."""

    def __init__(
        self,
        registry: SpecRegistry,
        client: IntacctClient,
        keys: KeySource,
        *,
        atomic: bool = False,
        batch_size: int,
    ) -> None:
        self.registry = registry
        self.client = client
        self.keys = keys
        self.atomic = atomic
        self.batch_size = batch_size
        self._size_limits: dict[str, int] = {}
        """Per object: the largest batch Intacct accepted after refusing a larger one as too
        large (a 429 "bulk size exceeds rate limit"); later requests are cut to it."""
        self._lock = threading.Lock()

    # -- request size ---------------------------------------------------------------------

    def batch_size_for(self, object_name: str) -> int:
        """Records per request for an object: ``batch_size``, or less once Intacct refused a
        request of that size as too large."""
        with self._lock:
            return min(self.batch_size, self._size_limits.get(object_name, self.batch_size))

    def _shrink(self, object_name: str, refused: int) -> None:
        """Remember that ``refused`` records were too many for one request."""
        half = max(1, refused // 2)
        with self._lock:
            current = self._size_limits.get(object_name, self.batch_size)
            self._size_limits[object_name] = min(current, half)
        logger.warning(
            "%s: Intacct refused %d records in one request as too large; sending at most %d "
            "per request from now on",
            object_name,
            refused,
            half,
        )

    # -- one request ----------------------------------------------------------------------

    def send(
        self,
        info: ObjectInfo,
        operation: str,
        entity: str | None,
        items: list[PreparedItem],
        *,
        object_name: str | None = None,
        path_info: ObjectInfo | None = None,
        budget: list[int] | None = None,
    ) -> Outcomes:
        """One write request (``create``/``update``/``delete``) for ``items``.

        ``path_info`` sends to another object's URL (a line's owner); ``object_name`` names
        the request in the journal. ``budget`` bounds the bisection of a rejected batch.
        """
        target = path_info or info
        again = functools.partial(
            self.send, info, operation, entity, object_name=object_name, path_info=path_info
        )
        if len(items) > self.batch_size_for(target.name):  # planned before a too-large 429
            out: Outcomes = {}
            remaining = items
            while remaining:
                size = self.batch_size_for(target.name)
                part, remaining = remaining[:size], remaining[size:]
                out.update(again(part, budget=budget))
            return out
        echo = [p.body if operation != "delete" else {"key": p.key} for p in items]
        try:
            method, path, body = self._request_for(target, operation, items)
        except IntacctError as exc:  # e.g. a key that cannot be put in a path
            failed = outcome_from_exception(exc)
            return {
                p.pos: ItemResult(operation, failed, e) for p, e in zip(items, echo, strict=True)
            }
        # encoded once: the bytes sent are the bytes the journal fingerprints (Decimal amounts
        # as exact JSON numbers; the client passes a Raw value through unchanged)
        content = None if body is None else BODY_ENCODER.encode(body)
        key = None
        if method != "DELETE":  # Intacct: GET and DELETE do not support Idempotency-Key
            fingerprint = request_fingerprint(
                object_name or info.name,
                operation,
                method,
                path,
                content if content is not None else b"null",
                entity=entity or self.client.settings.entity,
                transaction=self.atomic,
            )
            key = self.keys.key_for(fingerprint, what=f"{operation} {len(items)} {target.name}")
        outcomes, rejected_whole, too_large = self._request(
            method, path, content, entity, key, target, len(items), is_batch=isinstance(body, list)
        )
        if operation == "delete":
            outcomes = [already_deleted(o, p.key) for o, p in zip(outcomes, items, strict=True)]
        if too_large and len(items) > 1:  # nothing was written: send it again, smaller
            self._settle(key)
            self._shrink(target.name, len(items))
            return again(items, budget=budget)
        if rejected_whole and len(items) > 1 and not self.atomic:
            budget = budget if budget is not None else [MAX_ISOLATION_REQUESTS]
            if budget[0] >= 2:
                budget[0] -= 2
                self._settle(key)  # answered: this key is never needed again
                logger.warning(
                    "%s: Intacct refused a request of %d records as a whole (%s); re-sending "
                    "it in halves to find the records at fault",
                    target.name,
                    len(items),
                    outcomes[0].error,
                )
                half = len(items) // 2
                return {
                    **again(items[:half], budget=budget),
                    **again(items[half:], budget=budget),
                }
        if self.atomic and not all(o.ok for o in outcomes):
            outcomes = roll_back(outcomes, items)
        for outcome in outcomes:
            outcome.idempotency_key = key
        return {
            p.pos: ItemResult(operation, o, e)
            for p, o, e in zip(items, outcomes, echo, strict=True)
        }

    def _request(
        self,
        method: str,
        path: str,
        content: bytes | None,
        entity: str | None,
        key: str | None,
        target: ObjectInfo,
        count: int,
        *,
        is_batch: bool,
    ) -> tuple[list[ItemOutcome], bool, bool]:
        """(outcomes by position, refused as a whole?, refused as too large?)."""
        try:
            response = self.client.request(
                method,
                path,
                json=None if content is None else msgspec.Raw(content),
                entity=entity if entity is not None else DEFAULT_ENTITY,
                idempotency_key=key,
                transaction=self.atomic,
                operation=target.name,
                # a multi-record answer with a 4xx status (an atomic batch rolled back) still
                # carries one entry per record: read it rather than raise on the first error
                expected=_BATCH_STATUSES if is_batch else _SINGLE_STATUSES,
            )
        except Exception as exc:  # every record of the request gets the failure
            if not isinstance(exc, IntacctError):
                logger.exception("unexpected failure writing %s", target.name)
            failed = outcome_from_exception(exc)
            api_error = exc if isinstance(exc, IntacctAPIError) else None
            rejected = api_error is not None and api_error.status == 400 and not failed.unknown
            too_large = api_error is not None and api_error.is_too_large
            return [failed for _ in range(count)], rejected, too_large
        payload = response.json()
        outcomes = outcomes_from_response(response.status, payload, count)
        cached = response.headers.get(CACHED_DATE_HEADER)
        if cached:
            for outcome in outcomes:
                outcome.replayed = True
                outcome.note = (
                    f"replayed: Intacct answered from its idempotency cache ({cached}); "
                    "this request had already been executed, it was not executed again"
                )
        return outcomes, response.status == 400 and is_whole_request_error(payload), False

    def _settle(self, key: str | None) -> None:
        if key is not None:
            self.keys.settle([key])

    def collection_path(self, info: ObjectInfo) -> str:
        """The object's collection URL (some of Sage's POST paths end in ``/{key}``)."""
        for op_id in (info.create_operation_id, info.list_operation_id):
            if op_id:
                return self.registry.operation(op_id).path.removesuffix("/{key}")
        return f"/objects/{info.name}"

    def _request_for(
        self, target: ObjectInfo, operation: str, items: list[PreparedItem]
    ) -> tuple[str, str, Any]:
        """(method, path, body) of the write request for ``items``."""
        collection = self.collection_path(target)
        body: Any
        if operation == "delete":
            keys = [p.key for p in items]
            method, path, body = "DELETE", f"{collection}/{_encode_keys(keys)}", None
        elif operation == "create":
            method, path = "POST", collection
            body = items[0].body if len(items) == 1 else [p.body for p in items]
        else:  # update
            method = "PATCH"
            if len(items) == 1:
                single = dict(items[0].body)
                key = single.pop("key", items[0].key)
                path, body = f"{collection}/{_encode_keys([key])}", single
            else:
                path, body = collection, [p.body for p in items]
        return method, path, body


def already_deleted(outcome: ItemOutcome, key: str | None) -> ItemOutcome:
    """A delete answered "not found" did what was asked: the record is gone (a rerun, or a
    retry of a delete whose first answer was lost). Reported ``ok`` with a note, not an error.

    Only for a key Intacct could have issued (its keys are whole numbers): any other value
    never named a record, so "not found" stays an error that names it.
    """
    if outcome.ok or outcome.unknown or not (key or "").isdigit():
        return outcome
    code = outcome.error_code or ""
    if code in _NOT_FOUND_CODES or "not found" in (outcome.error or "").lower():
        return ItemOutcome(
            ok=True,
            note=f"already deleted: Intacct has no record with this key ({outcome.error})",
        )
    return outcome


def roll_back(outcomes: list[ItemOutcome], items: list[PreparedItem]) -> list[ItemOutcome]:
    """Atomic batch with a failure: Intacct wrote nothing, so no record may be reported ok."""
    first = next(
        (f"{p.label}: {o.error}" for p, o in zip(items, outcomes, strict=True) if not o.ok), ""
    )
    return [
        o
        if not o.ok
        else ItemOutcome(
            ok=False,
            error=f"not written: the atomic batch was rolled back ({first})",
            error_code="rolledBack",
        )
        for o in outcomes
    ]


def _encode_keys(keys: Sequence[str | None]) -> str:
    return encode_path_value([str(k) for k in keys])
