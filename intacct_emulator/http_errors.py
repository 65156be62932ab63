"""Intacct error envelopes produced by the HTTP layer (gateway, auth, routing, faults).

The envelope itself comes from `envelopes` (shared with the data layer, so there is one shape);
this module turns it into responses for failures that happen before a request reaches the
company: bad tokens, throttling, injected faults, unknown paths. They use shape 1 of the fact
sheet (§8), the one the spec's `400error` response declares and
real 400s show: `{"ia::result": {"ia::error": {...}}, "ia::meta": {...}}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.responses import Response

from intacct_emulator.envelopes import error_body, error_object

_ENCODER = msgspec.json.Encoder()

JSON = "application/json"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """Encode with msgspec (fast, Decimal-as-string) and wrap in a plain Starlette Response."""
    return Response(_ENCODER.encode(body), status_code=status, headers=headers, media_type=JSON)


def error_response(
    status: int,
    code: str,
    message: str,
    error_id: str,
    *,
    headers: Mapping[str, str] | None = None,
    message_id: str | None = None,
    placeholders: Mapping[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response:
    """An error envelope as a ready response."""
    error = error_object(
        code,
        message,
        error_id,
        message_id=message_id or "IA." + code.upper(),
        placeholders=placeholders,
        details=details,
    )
    return json_response(error_body(error), status, headers)


def not_found(path: str) -> Response:
    """404 for a path or object the API does not have, in the envelope clients parse."""
    return error_response(
        404,
        "notFound",
        f"The requested resource {path} was not found",
        "REST-1004",
        message_id="IA.RESOURCE_NOT_FOUND",
        placeholders={"PATH": path},
    )


def method_not_allowed(method: str, path: str) -> Response:
    """405 in the envelope, so a client's error parser never sees Starlette's plain text."""
    return error_response(
        405,
        "methodNotAllowed",
        f"The {method} method is not supported for {path}",
        "REST-1005",
        message_id="IA.METHOD_NOT_ALLOWED",
        placeholders={"METHOD": method, "PATH": path},
    )


def invalid_request(message: str, error_id: str, **placeholders: str) -> Response:
    """400 `invalidRequest` (bad JSON, missing payload, too many records...)."""
    return error_response(
        400, "invalidRequest", message, error_id, placeholders=placeholders or None
    )
