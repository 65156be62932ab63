"""Intacct response and error envelopes, built in one place.

Every body the emulator answers with goes through these helpers so the shapes stay exactly the
ones the recordings and the spec show: ``ia::result`` + ``ia::meta`` for successes, and the
spec's 400 shape ``{"ia::result": {"ia::error": {...}}, "ia::meta": {...}}`` for failures.
Clients parse these defensively, so the emulator must not invent a fourth shape.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

JSON = dict[str, Any]


class EmulatorError(Exception):
    """A request the emulator refuses; carries the HTTP status and a ready-to-send body.

    The HTTP layer only has to serialise ``body`` with ``status``; nothing else needs mapping.
    """

    def __init__(self, status: int, body: JSON) -> None:
        self.status = status
        self.body = body
        error = body.get("ia::result", {}).get("ia::error", {})
        super().__init__(f"{status} {error.get('errorId')}: {error.get('message')}")

    @property
    def error(self) -> JSON:
        """The inner ``ia::error`` object (what batch results embed per record)."""
        result: JSON = self.body["ia::result"]["ia::error"]
        return result


def support_id(seed: str) -> str:
    """A deterministic, opaque support id, like the ones Intacct asks you to quote."""
    digest = hashlib.sha256(seed.encode()).hexdigest()[:26]
    return f"{digest}%7E{digest[:8].upper()}"


def error_object(
    code: str,
    message: str,
    error_id: str,
    *,
    message_id: str = "IA.REQUEST_ERROR",
    placeholders: Mapping[str, Any] | None = None,
    details: Sequence[JSON] | None = None,
) -> JSON:
    """The ``ia::error`` object with every member real responses carry."""
    error: JSON = {
        "code": code,
        "message": message,
        "errorId": error_id,
        "additionalInfo": {
            "messageId": message_id,
            "placeholders": dict(placeholders or {}),
            "propertySet": {},
        },
        "supportId": support_id(f"{error_id}|{message}"),
    }
    if details:
        error["details"] = list(details)
    return error


def detail(
    code: str,
    message: str,
    error_id: str,
    target: str,
    *,
    message_id: str = "IA.REQUEST_ERROR",
    placeholders: Mapping[str, Any] | None = None,
) -> JSON:
    """One ``details[]`` entry; ``target`` is a JSON-pointer-like path such as ``/name``."""
    return {
        "code": code,
        "message": message,
        "errorId": error_id,
        "target": target,
        "additionalInfo": {
            "messageId": message_id,
            "placeholders": dict(placeholders or {}),
            "propertySet": {},
        },
    }


def error_body(error: JSON) -> JSON:
    """Wrap one ``ia::error`` in the spec's 400 response shape."""
    return {
        "ia::result": {"ia::error": error},
        "ia::meta": {"totalCount": 1, "totalSuccess": 0, "totalError": 1},
    }


def fail(
    status: int,
    code: str,
    message: str,
    error_id: str,
    *,
    message_id: str = "IA.REQUEST_ERROR",
    placeholders: Mapping[str, Any] | None = None,
    details: Sequence[JSON] | None = None,
) -> EmulatorError:
    """Build (not raise) an :class:`EmulatorError`; callers write ``raise fail(...)``."""
    error = error_object(
        code,
        message,
        error_id,
        message_id=message_id,
        placeholders=placeholders,
        details=details,
    )
    return EmulatorError(status, error_body(error))


def payload_errors(details: Sequence[JSON]) -> EmulatorError:
    """400 REST-1064 "Payload contains errors", the field-level problems in ``details``."""
    return fail(
        400,
        "invalidRequest",
        "Payload contains errors",
        "REST-1064",
        message_id="IA.PAYLOAD_CONTAINS_ERRORS",
        details=details,
    )


def single(result: Any) -> JSON:
    """A single-record success (get/create/update): object result + success counters."""
    return {"ia::result": result, "ia::meta": {"totalCount": 1, "totalSuccess": 1, "totalError": 0}}


def page(rows: list[Any], *, total: int, start: int, size: int) -> JSON:
    """A paged collection (list, query) with Intacct's offset paging metadata.

    ``next``/``previous`` are the ``start`` values of the neighbouring pages or ``null``,
    as in the recorded GL-account query (start 101 -> previous 1).
    """
    next_start = start + size if start - 1 + size < total else None
    previous = max(1, start - size) if start > 1 else None
    return {
        "ia::result": rows,
        "ia::meta": {
            "totalCount": total,
            "start": start,
            "pageSize": size,
            "next": next_start,
            "previous": previous,
        },
    }


def batch(results: list[JSON], *, errors: int) -> JSON:
    """A multi-record result: one entry per input record, in order, plus overall counters."""
    return {
        "ia::result": results,
        "ia::meta": {
            "totalCount": len(results),
            "totalSuccess": len(results) - errors,
            "totalError": errors,
        },
    }


# -- the errors the data layer raises (one place for their ids, texts and placeholders) -----

MAX_BATCH = 500
"""Intacct's limit of records in one multi-record request."""


def not_found(object_name: str, key: str) -> EmulatorError:
    """404 for a key that does not exist (or is not visible from the request's entity)."""
    return fail(
        404,
        "notFound",
        f"The {object_name} record with key {key} was not found",
        "REST-1050",
        message_id="IA.RECORD_NOT_FOUND",
        placeholders={"OBJECT": object_name, "KEY": key},
    )


def method_not_allowed(object_name: str, operation: str, hint: str = "") -> EmulatorError:
    """405 for an operation the spec does not define for the object (e.g. owner-only lines)."""
    return fail(
        405,
        "methodNotAllowed",
        f"{operation} is not supported for {object_name}{hint}",
        "REST-1052",
        message_id="IA.OPERATION_NOT_SUPPORTED",
        placeholders={"OBJECT": object_name, "OPERATION": operation},
    )


def duplicate_id(object_name: str, record_id: str) -> EmulatorError:
    """409: ``id`` is unique per object (the target's upsert relies on it)."""
    return fail(
        409,
        "duplicateValue",
        f"Another {object_name} with the id {record_id} already exists",
        "REST-1053",
        message_id="IA.DUPLICATE_VALUE",
        placeholders={"OBJECT": object_name, "ID": record_id},
        details=[
            detail(
                "duplicateValue",
                f"Another {object_name} with the id {record_id} already exists",
                "REST-1053",
                "/id",
                message_id="IA.DUPLICATE_VALUE",
                placeholders={"ID": record_id},
            )
        ],
    )


def too_many(count: int) -> EmulatorError:
    """400 for a batch above Intacct's 500-record limit (id chosen by the emulator)."""
    return fail(
        400,
        "invalidRequest",
        f"A batch request can contain at most {MAX_BATCH} records; {count} were sent",
        "REST-1051",
        message_id="IA.BATCH_LIMIT_EXCEEDED",
        placeholders={"LIMIT": str(MAX_BATCH), "COUNT": str(count)},
    )


def unprocessed() -> EmulatorError:
    """What an atomic batch reports for records rolled back because another one failed."""
    return fail(
        422,
        "unprocessed",
        "Not processed: another record in this transaction failed",
        "REST-1054",
        message_id="IA.UNPROCESSED",
    )


def batch_error_entry(error: EmulatorError) -> JSON:
    """One failed record's element of a multi-record answer (with its own status)."""
    return {"ia::error": error.error, "ia::status": error.status}
