"""Exception hierarchy shared by every module, and the parser for Intacct's error bodies.

Intacct reports failures in three different envelope shapes (see the API fact sheet, section 8)
and a proxy in front of it may answer with HTML. Callers should not have to care: every failed
HTTP exchange becomes one :class:`IntacctAPIError` with the same attributes, whose ``str()`` is a
single readable line. Nothing here ever puts a secret into exception text: the bodies we parse are
server answers (never our requests), and :func:`scrub` removes anything that looks like a bearer
token or a credential assignment from any text we quote, as a second line of defence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec

__all__ = [
    "ConfigError",
    "InsecureTokenStoreError",
    "IntacctAPIError",
    "IntacctError",
    "LoginRequiredError",
    "ModelUnavailableError",
    "TransportError",
    "UnknownObjectError",
    "UnknownOperationError",
    "extract_error",
    "parse_error_response",
    "scrub",
]

LOGIN_REQUIRED_ERROR_IDS = frozenset({"REST-2102"})
LOGIN_REQUIRED_CODES = frozenset({"tokeninvalid", "invalid_grant"})
REFUSED_QUERY_FIELD_ERROR_ID = "REST-1106"
TOKEN_INVALID_ERROR_ID = "REST-1206"  # noqa: S105 - an error id, not a secret
"""Integrators see an invalid or expired access token answered as HTTP 400 with this errorId
(Nango, 2026-07) besides the documented 401: the client refreshes on it exactly as on a 401."""
_REFUSED_FIELD_PLACEHOLDERS = ("FIELD", "FIELD_PATH")
"""REST-1106 names the refused field as ``FIELD`` (recorded traffic) or ``FIELD_PATH`` inside
``details[]`` (keboola extractor)."""
_TOO_LARGE = re.compile(r"(?i)\b(bulk|batch|request|payload) size\b|\btoo large\b|\bsize exceeds\b")

_SNIPPET_CHARS = 160

# Text we quote from a server could, in a misbehaving proxy, echo credentials back. These
# patterns catch the usual spellings; they are a safety net, not the primary protection.
_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/=]+"),
    re.compile(
        r"(?i)\b(access_token|refresh_token|client_secret|password|authorization|code_verifier)"
        r"(\"?\s*[:=]\s*\"?)[^\"&\s,;}]+"
    ),
)
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def scrub(text: str) -> str:
    """Replace bearer tokens and ``secret=value`` style credentials in ``text`` with a marker."""
    text = _SECRET_PATTERNS[0].sub(r"\1 [redacted]", text)
    return _SECRET_PATTERNS[1].sub(r"\1\2[redacted]", text)


def _snippet(body: bytes) -> str:
    """A short, single-line, tag-free preview of a body that is not the JSON we expected."""
    text = body[:4096].decode("utf-8", errors="replace")
    text = _TAG.sub(" ", text)
    text = _CONTROL.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    text = scrub(text)
    if len(text) > _SNIPPET_CHARS:
        text = text[: _SNIPPET_CHARS - 3].rstrip() + "..."
    return text


def _status_text(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


class IntacctError(Exception):
    """Base of every error this project raises on purpose; ``str()`` never contains secrets.

    ``outcome_unknown`` is set by the client on the error a *write* request ends with when an
    earlier attempt of it may have reached Intacct and been executed (a lost response, a 5xx)
    and no later answer settled it: the caller must not report such a write as failed.
    """

    outcome_unknown: bool = False


class ConfigError(IntacctError):
    """Settings or arguments are wrong (missing client id, http:// to a remote host, ...)."""


class _UnknownNameError(IntacctError):
    """A name that is not in the spec registry; carries the closest names so users can fix typos."""

    kind = "name"

    def __init__(
        self, name: str, suggestions: Sequence[str] = (), message: str | None = None
    ) -> None:
        self.name = name
        self.suggestions: tuple[str, ...] = tuple(suggestions)
        if message is None:
            message = f"unknown {self.kind} {name!r}"
            if self.suggestions:
                message += "; did you mean: " + ", ".join(self.suggestions) + "?"
        super().__init__(message)


class UnknownOperationError(_UnknownNameError):
    """An operationId that none of the loaded OpenAPI files defines."""

    kind = "operation"


class UnknownObjectError(_UnknownNameError):
    """An object (or stream) name that none of the loaded OpenAPI files defines."""

    kind = "object"


class LoginRequiredError(IntacctError):
    """The stored grant can no longer be used; only a new interactive login fixes it.

    Raised for ``invalid_grant`` from the token endpoint, REST-2102 / ``tokenInvalid`` after a
    refresh, or when there is no refresh token at all. ``api_error`` keeps the HTTP details when
    the cause was a server answer.
    """

    DEFAULT_MESSAGE = "login required: run `intacct login` again"

    def __init__(
        self, message: str | None = None, *, api_error: IntacctAPIError | None = None
    ) -> None:
        self.api_error = api_error
        if message is None:
            message = self.DEFAULT_MESSAGE
            if api_error is not None:
                message = f"{api_error}; {message}"
        super().__init__(message)


class InsecureTokenStoreError(IntacctError):
    """The token file is readable by group/other, so we refuse to use the secrets inside it."""


class TransportError(IntacctError):
    """The server could not be reached, or kept dropping the connection, after all retries."""


class IntacctAPIError(IntacctError):
    """Intacct (or something in front of it) answered with an error status.

    ``operation`` names what failed (object name or operationId) so a message from a run that
    touches 50 objects still says which one. ``retry_after`` is the server-requested wait in
    seconds when the error was a throttle that we gave up on.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        error_id: str | None = None,
        details: Sequence[Mapping[str, Any]] | None = None,
        support_id: str | None = None,
        placeholders: Mapping[str, Any] | None = None,
        operation: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.message = scrub(message)
        self.code = code
        self.error_id = error_id
        self.details: list[dict[str, Any]] = [dict(d) for d in details or ()]
        self.support_id = support_id
        self.placeholders: dict[str, str] = {
            str(k): str(v) for k, v in (placeholders or {}).items()
        }
        self.operation = operation
        self.retry_after = retry_after
        super().__init__(self.message)

    def __str__(self) -> str:
        if self.operation:
            text = f"{self.operation}: {self.message}"
        elif self.message.startswith(f"HTTP {self.status}"):
            text = self.message
        else:
            text = f"{_status_text(self.status)}: {self.message}"
        extra = [
            scrub(str(d["message"]))
            for d in self.details
            if isinstance(d.get("message"), str) and d["message"] not in self.message
        ]
        if extra:
            text += " [" + "; ".join(extra) + "]"
        ident = self.error_id or self.code
        if ident and ident not in self.message:
            text += f" ({ident})"
        if self.support_id:
            text += f" [supportId {self.support_id}]"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, error_id={self.error_id!r}, "
            f"code={self.code!r}, operation={self.operation!r}, message={self.message!r})"
        )

    def _identifiers(self) -> Iterable[str]:
        for value in (self.error_id, self.code):
            if value:
                yield value
        for detail in self.details:
            for key in ("errorId", "code"):
                value = detail.get(key)
                if isinstance(value, str):
                    yield value

    def is_login_required(self) -> bool:
        """True when retrying cannot help and the user must authorise again (REST-2102 etc.)."""
        for ident in self._identifiers():
            if ident in LOGIN_REQUIRED_ERROR_IDS or ident.lower() in LOGIN_REQUIRED_CODES:
                return True
        return False

    def is_token_invalid(self) -> bool:
        """True for a refused access token: HTTP 401, or HTTP 400 with errorId REST-1206.

        The client refreshes the token and re-sends on either (one refresh per refused token).
        """
        if self.status == 401:
            return True
        return self.status == 400 and TOKEN_INVALID_ERROR_ID in set(self._identifiers())

    @property
    def is_too_large(self) -> bool:
        """A 429 that refuses the request's size ("bulk size exceeds rate limit"), not its rate.

        Sage's error-handling guide gives 429 two meanings: "bulk size exceeds rate limit" or
        "total requests in a period exceed quota". Waiting does not help the first one: the
        caller must send fewer records per request (the target halves its batch). Recognised
        from the message or detail text (size/too large wording) of a 429 that is not a plain
        throttle; the emulator's fault ``too_large_over`` answers with such a message.
        """
        if self.status != 429:
            return False
        texts = [self.message, self.code or "", self.error_id or ""]
        texts += [str(d.get("message", "")) for d in self.details]
        return any(_TOO_LARGE.search(text) for text in texts if text)

    def refused_query_field(self) -> str | None:
        """The field named by a REST-1106 "cannot be used in query" error, else None.

        The pager drops that field and retries (or, for the replication field, falls back to
        a full read); Intacct puts its name in ``additionalInfo.placeholders.FIELD`` on the
        error or ``FIELD``/``FIELD_PATH`` on one of its details (keboola's extractor reads
        ``FIELD_PATH`` there), else the message says "The X field ...".
        """
        if self.error_id == REFUSED_QUERY_FIELD_ERROR_ID:
            for name in _REFUSED_FIELD_PLACEHOLDERS:
                if self.placeholders.get(name):
                    return self.placeholders[name]
        for detail in self.details:
            if detail.get("errorId") == REFUSED_QUERY_FIELD_ERROR_ID:
                found = _placeholders(detail)
                for name in _REFUSED_FIELD_PLACEHOLDERS:
                    if found.get(name):
                        return found[name]
                match = re.match(r"\s*The (\S+) field", str(detail.get("message") or ""))
                if match:
                    return match.group(1)
        if self.error_id == REFUSED_QUERY_FIELD_ERROR_ID:
            match = re.match(r"\s*The (\S+) field", self.message)
            if match:
                return match.group(1)
        return None


class ModelUnavailableError(IntacctAPIError):
    """The model service has no model of this object for this tenant.

    Intacct answers HTTP 200 with ``{"ia::result": []}`` for an object the company lacks (not
    subscribed or not enabled; amp-labs connectors' Sage Intacct handler and fixture), where a
    client would expect an error status. Raised as a 404 ``notFound`` so callers that skip
    refused objects (403/404, see discovery) skip this one the same way, with one warning;
    ``http_status`` keeps what the server really sent.
    """

    def __init__(self, object_name: str, http_status: int = 200) -> None:
        super().__init__(
            404,
            f"the model service returned no model (HTTP {http_status}, empty ia::result): the "
            "object is not available to this company (not subscribed or not enabled)",
            code="notFound",
            operation=object_name,
        )
        self.http_status = http_status


def _placeholders(error: Mapping[str, Any]) -> dict[str, str]:
    info = error.get("additionalInfo")
    if not isinstance(info, Mapping):
        return {}
    raw = info.get("placeholders")
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): str(v) for k, v in raw.items() if v is not None}


def extract_error(payload: Any) -> dict[str, Any] | None:
    """Find the error object in any of the three shapes Intacct uses, or None.

    1. ``{"ia::result": {"ia::error": {...}}, "ia::meta": {...}}`` (also inside a result list)
    2. ``{"ia::error": {...}, "ia::meta": {...}}``
    3. ``{"error": {...}}`` and OAuth's ``{"error": "invalid_grant", "error_description": ...}``

    The OAuth shape is normalised to ``{"code": "invalid_grant", "message": ...}``. A successful
    record is never mistaken for an error: only these keys are looked at.
    """
    if not isinstance(payload, Mapping):
        return None
    error = payload.get("ia::error")
    if isinstance(error, Mapping):
        return dict(error)
    result = payload.get("ia::result")
    if isinstance(result, Mapping):
        found = extract_error(result)
        if found is not None:
            return found
    elif isinstance(result, list):
        for item in result:
            found = extract_error(item)
            if found is not None:
                return found
    error = payload.get("error")
    if isinstance(error, Mapping):
        return dict(error)
    if isinstance(error, str) and error:
        description = payload.get("error_description")
        message = description if isinstance(description, str) and description else error
        return {"code": error, "message": message}
    return None


def _from_error_object(
    status: int,
    error: Mapping[str, Any],
    *,
    operation: str | None,
    retry_after: float | None,
) -> IntacctAPIError:
    raw_details = error.get("details")
    details: list[Mapping[str, Any]] = []
    if isinstance(raw_details, list):
        details = [d for d in raw_details if isinstance(d, Mapping)]
    message = error.get("message")
    if not isinstance(message, str) or not message.strip():
        first = next((d.get("message") for d in details if isinstance(d.get("message"), str)), None)
        message = first or _status_text(status)
    code = error.get("code")
    error_id = error.get("errorId")
    support_id = error.get("supportId")
    return IntacctAPIError(
        status,
        message,
        code=str(code) if code is not None else None,
        error_id=str(error_id) if error_id is not None else None,
        details=details,
        support_id=str(support_id) if support_id is not None else None,
        placeholders=_placeholders(error),
        operation=operation,
        retry_after=retry_after,
    )


def parse_error_response(
    status: int,
    body: bytes,
    *,
    operation: str | None,
    content_type: str | None,
    retry_after: float | None = None,
) -> IntacctAPIError:
    """Turn any error answer into an :class:`IntacctAPIError`; never raises a decode error.

    Non-JSON bodies (an HTML page from a proxy, plain text, nothing) give a message naming the
    status and a short sanitised snippet, which is what a person needs to see which box failed.
    """
    body = body or b""
    if not body.strip():
        return IntacctAPIError(
            status,
            f"{_status_text(status)} (empty response body)",
            operation=operation,
            retry_after=retry_after,
        )
    try:
        payload = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        kind = (content_type or "unknown content type").split(";")[0].strip()
        return IntacctAPIError(
            status,
            f"{_status_text(status)} with a non-JSON {kind} body: {_snippet(body)!r}",
            operation=operation,
            retry_after=retry_after,
        )
    error = extract_error(payload)
    if error is not None:
        return _from_error_object(status, error, operation=operation, retry_after=retry_after)
    if isinstance(payload, Mapping) and isinstance(payload.get("message"), str):
        # Gateways sometimes answer {"code": "GW-0010", "message": "..."} without an envelope.
        return _from_error_object(status, payload, operation=operation, retry_after=retry_after)
    return IntacctAPIError(
        status,
        f"{_status_text(status)} with an unrecognised error body: {_snippet(body)!r}",
        operation=operation,
        retry_after=retry_after,
    )
