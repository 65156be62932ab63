"""Per-record results of a Mutate run, and reading them out of Intacct's batch answers.

Intacct answers a multi-record write with one ``ia::result`` entry per input record, in input
order, each either a reference (``key``/``id``/``href``) or an ``ia::error`` (often with HTTP
207). Successful deletes carry no key at all, so results are matched by **array position**,
never by key. Everything that turns an answer (or an exception) into per-record outcomes lives
here so the engine only deals with requests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from intacct_api.errors import IntacctAPIError, IntacctError, scrub

__all__ = [
    "ERROR",
    "OK",
    "SKIPPED",
    "UNKNOWN",
    "ItemOutcome",
    "ItemResult",
    "MutateResult",
    "is_whole_request_error",
    "outcomes_from_response",
]

OK = "ok"
"""Written: Intacct confirmed it (possibly by replaying an earlier execution, see ``replayed``)."""
ERROR = "error"
"""Not written: refused locally or by Intacct."""
SKIPPED = "skipped"
"""Deliberately not sent (a delete while ``allow_deletes`` is off)."""
UNKNOWN = "unknown"
"""May or may not have been written: an attempt may have been executed and no answer settled
it. A rerun within 48 hours re-sends the same request with the same Idempotency-Key and learns
the outcome; an upsert's look-up by natural key settles it later too."""


@dataclass
class MutateResult:
    """The outcome for one input record; ``to_dict`` is the JSON line users see.

    ``index`` is the 0-based position in the input. ``request`` echoes what was (or would have
    been) sent for this record, or the record as given when it never got that far.
    """

    index: int
    operation: str
    object: str
    status: str
    request: Any = None
    key: str | None = None
    id: str | None = None
    href: str | None = None
    error: str | None = None
    error_code: str | None = None
    entity: str | None = None
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False
    line: int | None = None
    replayed: bool = False
    note: str | None = None
    idempotency_key: str | None = None

    @property
    def ok(self) -> bool:
        """True when the record was written (or, in a dry run, would be sent)."""
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with Intacct-style names (``errorCode``); empty members omitted."""
        out: dict[str, Any] = {"line": self.line} if self.line is not None else {}
        out |= {
            "index": self.index,
            "status": self.status,
            "operation": self.operation,
            "object": self.object,
        }
        for name, value in (
            ("key", self.key),
            ("id", self.id),
            ("href", self.href),
            ("entity", self.entity),
            ("error", self.error),
            ("errorCode", self.error_code),
        ):
            if value is not None:
                out[name] = value
        if self.replayed:
            out["replayed"] = True
        if self.note:
            out["note"] = self.note
        if self.idempotency_key:
            out["idempotencyKey"] = self.idempotency_key
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.dry_run:
            out["dryRun"] = True
        out["request"] = self.request
        return out


@dataclass
class ItemOutcome:
    """What the API said about one element of a request.

    ``unknown``: not ok, yet maybe written (see :data:`UNKNOWN`). ``replayed``: ok because
    Intacct replayed the cached answer of an earlier execution of the same request.
    """

    ok: bool
    key: str | None = None
    id: str | None = None
    href: str | None = None
    error: str | None = None
    error_code: str | None = None
    unknown: bool = False
    replayed: bool = False
    note: str | None = None
    idempotency_key: str | None = None


class ItemResult(NamedTuple):
    """What happened to one record of a request: the operation it got (an upsert becomes a
    create or an update), Intacct's outcome, and the request element echoed in results."""

    operation: str
    outcome: ItemOutcome
    request: dict[str, Any] | None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def error_from_object(error: Mapping[str, Any], status: int = 400) -> ItemOutcome:
    """An error outcome from one ``ia::error`` object: message, details (with their field
    targets) and the error id, e.g. ``Another vendor with the id V1 already exists
    (REST-1053)``."""
    details = [d for d in error.get("details") or () if isinstance(d, Mapping)]
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = next((str(d["message"]) for d in details if d.get("message")), "")
    message = scrub(message or f"HTTP {status}")
    parts = []
    for detail in details:
        text = str(detail.get("message") or "")
        target = str(detail.get("target") or "").lstrip("/")
        if target and target not in text:
            text = f"field '{target}': {text}"
        if text and text not in message:
            parts.append(scrub(text))
    if parts:
        message += " [" + "; ".join(parts) + "]"
    ident = _text(error.get("errorId")) or _text(error.get("code"))
    if ident and ident not in message:
        message += f" ({ident})"
    return ItemOutcome(ok=False, error=message, error_code=ident)


def _outcome_of(element: Any, status: int) -> ItemOutcome:
    if not isinstance(element, Mapping):
        return ItemOutcome(ok=True)
    error = element.get("ia::error")
    if isinstance(error, Mapping):
        return error_from_object(error, status)
    item_status = element.get("ia::status")
    if isinstance(item_status, int) and item_status >= 400:
        return ItemOutcome(ok=False, error=f"HTTP {item_status}", error_code=str(item_status))
    return ItemOutcome(
        ok=True,
        key=_text(element.get("key")),
        id=_text(element.get("id")),
        href=_text(element.get("href")),
    )


def outcomes_from_response(status: int, payload: Any, count: int) -> list[ItemOutcome]:
    """One outcome per request element, by position.

    A 204 (delete) means every element succeeded. An object ``ia::result`` answers a
    single-record request. A list shorter than the request is padded with errors so nothing is
    silently counted as written.
    """
    if status == 204 or payload in (None, {}, b""):
        return [ItemOutcome(ok=True) for _ in range(count)]
    result = payload.get("ia::result") if isinstance(payload, Mapping) else None
    if isinstance(payload, Mapping) and isinstance(payload.get("ia::error"), Mapping):
        failed = error_from_object(payload["ia::error"], status)
        return [failed for _ in range(count)]
    if isinstance(result, Mapping):
        if count == 1 or "ia::error" in result:
            outcome = _outcome_of(result, status)
            return [outcome for _ in range(count)]
        result = [result]
    if not isinstance(result, Sequence) or isinstance(result, str | bytes):
        return [ItemOutcome(ok=True) for _ in range(count)]
    outcomes = [_outcome_of(element, status) for element in list(result)[:count]]
    missing = count - len(outcomes)
    outcomes.extend(
        ItemOutcome(ok=False, error="no result returned for this record", error_code="noResult")
        for _ in range(missing)
    )
    return outcomes


def is_whole_request_error(payload: Any) -> bool:
    """True when an answer rejects the request as a whole instead of record by record (an
    ``ia::error`` at the top, or as the single result of a multi-record request)."""
    if not isinstance(payload, Mapping):
        return False
    if isinstance(payload.get("ia::error"), Mapping):
        return True
    result = payload.get("ia::result")
    return isinstance(result, Mapping) and isinstance(result.get("ia::error"), Mapping)


def outcome_from_exception(exc: BaseException) -> ItemOutcome:
    """The outcome every record of a failed request gets (whole-request failure).

    An error whose ``outcome_unknown`` is set (an earlier attempt may have been executed)
    gives an *unknown* outcome: reporting it as failed could be a lie.
    """
    unknown = bool(getattr(exc, "outcome_unknown", False))
    if isinstance(exc, IntacctAPIError):
        code = exc.error_id or exc.code
    elif isinstance(exc, IntacctError):
        code = type(exc).__name__
    else:
        return ItemOutcome(
            ok=False, error=f"{type(exc).__name__}: {exc}", error_code="internalError"
        )
    error = str(exc)
    if unknown:
        error = (
            f"outcome unknown: an attempt may have been written before this failure ({error}); "
            "rerun the load within 48 hours to settle it (the same request is re-sent with "
            "the same Idempotency-Key)"
        )
    return ItemOutcome(ok=False, error=error, error_code=code, unknown=unknown)
