"""Fault injection: the limits and failures a client must survive, on demand and reproducibly.

Real Intacct throttles concurrent requests and request rates (429 with `X-IA-*` headers), has
transient 500/503s, slow responses and dropped connections. Clients' retry logic is only as good
as the tests that exercise it, so every one of these can be switched on at start (CLI flags) or at
run time (`POST /_emulator/faults`), deterministically (`fail_next`, `drop_next`) or randomly with
a seeded RNG (`error_rate_*`, `drop_connection_rate`, `random_seed`).

Faults apply to API routes only (never to `/_emulator/*`), and to `/oauth2/*` only when
`faults_on_oauth` is true, so a test can break the API without breaking the login it needs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.responses import Response
from starlette.types import Message, Send

from intacct_emulator.http_errors import error_response

RETRY_AFTER_HEADERS = (
    "Retry-After",
    "X-IA-Throttle-Limit-RetryAfter",
    "X-IA-Hour-Rate-Limit-Retry-After",
    "X-IA-TENANT-Throttle-Limit-Retry-After",
)
"""Header names a 429 may carry its wait in; clients are expected to understand all of them."""

_RATE_WINDOW = 60.0
ADVERTISED_CONCURRENCY = 8
"""Concurrency the soft-limit headers advertise when no `max_concurrent` is set (Tier 2)."""
KEY_ORDERS = ("numeric", "string")
REFUSED_FIELD_FORMS = ("placeholder", "details_field_path", "opaque")
ENTITY_HEADERS = ("X-IA-API-Param-Entity", "X-IA-API-ParamEntity")
TRANSACTION_HEADERS = ("X-IA-API-Param-Transaction", "X-IA-API-ParamTransaction")
TOO_LARGE_MESSAGE = "Bulk size exceeds rate limit: {count} records in one request, at most {limit}"
"""The 429 for a request too large (Sage's error-handling guide: "Bulk size exceeds rate limit
or total requests in a period exceed quota"); the exact wording is assumed, the client's
``IntacctAPIError.is_too_large`` recognises "bulk size" / "too large" / "size exceeds"."""


class FaultKnobs(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The knobs, validated by msgspec (unknown names and wrong types are rejected).

    `None` / 0 means "off". `retry_after_header` `None` lets each throttle use its natural header
    (concurrency and `fail_next` 429s: `X-IA-Throttle-Limit-RetryAfter`; per-minute rate and 503:
    `Retry-After`). `expire_tokens_now` is a one-shot action and always reads back false.

    Fidelity switches (docs/FIDELITY.md has the source of each): `token_error_status` 400 makes
    an unknown/expired/revoked token a 400 REST-1206 (some tenants); `refresh_failure` refuses
    every refresh grant with that status; `tenant_lacks_objects` get a 200 `{"ia::result": []}`
    model; `forbidden_objects` get 403 on every route; `key_sort`/`key_compare` choose numeric
    or text order for keys (different values = a deliberate mismatch); `refused_field_form`
    chooses how REST-1106 names the field (`opaque` = a deliberate unreadable form);
    `entity_headers`/`transaction_headers` are the spellings read (others are ignored);
    `rate_limit_headers` false drops the soft-limit headers; `idempotency_keys` false ignores
    `Idempotency-Key`; `too_large_over` N answers a batch of more than N records with the
    "bulk size exceeds rate limit" 429.
    """

    max_concurrent: int | None = None
    rate_per_minute: int | None = None
    retry_after_header: str | None = None
    retry_after_seconds: float = 1.0
    error_rate_500: float = 0.0
    error_rate_503: float = 0.0
    fail_next: list[int] = msgspec.field(default_factory=list)
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    drop_connection_rate: float = 0.0
    drop_next: int = 0
    expire_tokens_now: bool = False
    refuse_query_fields: dict[str, list[str]] = msgspec.field(default_factory=dict)
    random_seed: int | None = None
    faults_on_oauth: bool = False
    # -- fidelity switches: where real tenants differ, or a deliberate deviation that
    #    `intacct doctor` must catch (docs/FIDELITY.md lists each with its source).
    token_error_status: int = 401
    refresh_failure: int | None = None
    tenant_lacks_objects: list[str] = msgspec.field(default_factory=list)
    forbidden_objects: list[str] = msgspec.field(default_factory=list)
    key_sort: str = "numeric"
    key_compare: str = "numeric"
    refused_field_form: str = "placeholder"
    entity_headers: list[str] = msgspec.field(default_factory=lambda: list(ENTITY_HEADERS))
    transaction_headers: list[str] = msgspec.field(default_factory=lambda: [TRANSACTION_HEADERS[0]])
    rate_limit_headers: bool = True
    idempotency_keys: bool = True
    too_large_over: int | None = None

    def check(self) -> None:
        """Range checks msgspec's types cannot express; raises ValueError with the knob name."""
        for name in ("error_rate_500", "error_rate_503", "drop_connection_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.error_rate_500 + self.error_rate_503 > 1.0:
            raise ValueError("error_rate_500 + error_rate_503 must not exceed 1")
        for name in ("latency_ms", "latency_jitter_ms", "retry_after_seconds", "drop_next"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("max_concurrent", "rate_per_minute"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative")
        if self.retry_after_header not in (None, *RETRY_AFTER_HEADERS):
            raise ValueError(f"retry_after_header must be one of {', '.join(RETRY_AFTER_HEADERS)}")
        if any(not 400 <= status <= 599 for status in self.fail_next):
            raise ValueError("fail_next holds HTTP error statuses (400-599)")
        if self.token_error_status not in (400, 401):
            raise ValueError("token_error_status must be 400 (REST-1206) or 401")
        if self.refresh_failure is not None and not 400 <= self.refresh_failure <= 599:
            raise ValueError("refresh_failure must be an HTTP error status (400-599)")
        for name in ("key_sort", "key_compare"):
            if getattr(self, name) not in KEY_ORDERS:
                raise ValueError(f"{name} must be one of {', '.join(KEY_ORDERS)}")
        if self.refused_field_form not in REFUSED_FIELD_FORMS:
            raise ValueError(f"refused_field_form must be one of {', '.join(REFUSED_FIELD_FORMS)}")
        if self.too_large_over is not None and self.too_large_over < 1:
            raise ValueError("too_large_over must be at least 1")


@dataclass
class FaultHooks:
    """Actions some knobs trigger outside this module (tokens live in oauth, fields in company)."""

    expire_tokens: Callable[[], object] = lambda: None
    refuse_query_fields: Callable[[Mapping[str, list[str]]], object] = lambda _fields: None


@dataclass
class Admission:
    """The verdict for one API request: rejected with a response, or admitted (maybe doomed)."""

    rejection: Response | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    drop: bool = False


class DroppedConnection(Exception):  # noqa: N818 - it is an event, not an error of the caller
    """Raised after a partial body so the server aborts the connection (the injected fault)."""


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


_GENERIC_CODES = {
    400: "invalidRequest",
    401: "tokenInvalid",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    422: "operationFailed",
}


class FaultInjector:
    """Holds the knobs and the state they need (RNG, in-flight count, rate window, queues).

    Used only from the event loop, so plain counters are race-free.
    """

    def __init__(
        self, initial: Mapping[str, Any] | None = None, hooks: FaultHooks | None = None
    ) -> None:
        self.hooks = hooks or FaultHooks()
        self._initial = dict(initial or {})
        self.knobs = FaultKnobs()
        self._rng = random.Random(0)  # noqa: S311 - fault dice, not cryptography
        self.in_flight = 0
        self._window: deque[float] = deque()
        self.reset()

    # ------------------------------------------------------------------ configuration
    def reset(self) -> dict[str, Any]:
        """Back to the start-up knobs, with fresh counters and a re-seeded RNG."""
        self.knobs = FaultKnobs()
        self._rng = random.Random(0)  # noqa: S311
        self._window.clear()
        return self.configure(self._initial)

    def configure(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a partial update (only the given knobs change); returns all current knobs.

        Raises ValueError (message names the knob) and leaves the knobs unchanged on bad input.
        """
        merged = msgspec.structs.asdict(self.knobs) | dict(patch)
        try:
            knobs = msgspec.convert(merged, FaultKnobs)
        except msgspec.ValidationError as exc:
            raise ValueError(str(exc)) from None
        knobs.check()
        if "random_seed" in patch and knobs.random_seed is not None:
            self._rng = random.Random(knobs.random_seed)  # noqa: S311
        if knobs.expire_tokens_now:
            self.hooks.expire_tokens()
            knobs.expire_tokens_now = False
        if "refuse_query_fields" in patch:
            self.hooks.refuse_query_fields(knobs.refuse_query_fields)
        self.knobs = knobs
        return self.snapshot()

    def snapshot(self) -> dict[str, Any]:
        """Current knobs as JSON-ready data (what `/_emulator/faults` answers)."""
        return msgspec.structs.asdict(self.knobs)

    # ------------------------------------------------------------------ per request
    async def admit(self) -> Admission:
        """Decide one API request's fate; an admitted request must call `leave()` when done.

        Order: deterministic `fail_next` first (so tests get exactly what they queued), then
        the per-minute rate, the concurrency limit, random 500/503, and finally latency (while
        counted as in flight, so latency plus `max_concurrent` produces real throttling).
        """
        knobs = self.knobs
        if knobs.fail_next:
            return Admission(rejection=self.failure(knobs.fail_next.pop(0)))
        headers: list[tuple[bytes, bytes]] = []
        if knobs.rate_per_minute:
            now = time.monotonic()
            window = self._window
            while window and window[0] <= now - _RATE_WINDOW:
                window.popleft()
            if len(window) >= knobs.rate_per_minute:
                wait = max(1.0, math.ceil(_RATE_WINDOW - (now - window[0])))
                return Admission(rejection=self._rate_limited(wait))
            window.append(now)
            headers.append((b"x-ia-minute-rate-limit", str(knobs.rate_per_minute).encode()))
            remaining = knobs.rate_per_minute - len(window)
            headers.append((b"x-ia-minute-rate-limit-remaining", str(remaining).encode()))
        if knobs.max_concurrent and self.in_flight >= knobs.max_concurrent:
            return Admission(rejection=self.failure(429))
        if knobs.max_concurrent or knobs.rate_limit_headers:
            # Real answers carry the soft-limit headers whether or not a limit is near (assumed:
            # Sage's header guide lists them; `rate_limit_headers: false` drops them).
            limit = knobs.max_concurrent or ADVERTISED_CONCURRENCY
            headers.append((b"x-ia-throttle-limit", str(limit).encode()))
            remaining = max(0, limit - self.in_flight - 1)
            headers.append((b"x-ia-throttle-limit-remaining", str(remaining).encode()))
        if knobs.error_rate_500 or knobs.error_rate_503:
            roll = self._rng.random()
            if roll < knobs.error_rate_500:
                return Admission(rejection=self.failure(500))
            if roll < knobs.error_rate_500 + knobs.error_rate_503:
                return Admission(rejection=self.failure(503))
        drop = False
        if knobs.drop_next:
            knobs.drop_next -= 1
            drop = True
        elif knobs.drop_connection_rate:
            drop = self._rng.random() < knobs.drop_connection_rate
        self.in_flight += 1
        delay = knobs.latency_ms
        if knobs.latency_jitter_ms:
            delay += self._rng.uniform(0.0, knobs.latency_jitter_ms)
        if delay > 0:
            try:
                await asyncio.sleep(delay / 1000.0)
            except BaseException:
                self.in_flight -= 1
                raise
        return Admission(headers=headers, drop=drop)

    def forbidden(self, object_name: str | None) -> Response | None:
        """403 for an object the user may not read (`forbidden_objects`), else None."""
        if object_name and object_name.split("::", 1)[0] in self.knobs.forbidden_objects:
            return error_response(
                403,
                "forbidden",
                f"You do not have permission to access {object_name}",
                "REST-1102",
                message_id="IA.PERMISSION_DENIED",
                placeholders={"OBJECT": object_name},
            )
        return None

    def too_large(self, count: int) -> Response | None:
        """429 "bulk size exceeds rate limit" for a batch over `too_large_over` records."""
        limit = self.knobs.too_large_over
        if limit is None or count <= limit:
            return None
        return error_response(
            429,
            "rateLimitExceeded",
            TOO_LARGE_MESSAGE.format(count=count, limit=limit),
            "GW-0010",
            message_id="IA.BULK_SIZE_EXCEEDED",
        )

    def entity_header_names(self) -> list[str]:
        """Entity header spellings this tenant reads (lower case; others are ignored)."""
        return [name.lower() for name in self.knobs.entity_headers]

    def transaction_header_names(self) -> list[str]:
        """Transaction header spellings this tenant reads (lower case; others are ignored)."""
        return [name.lower() for name in self.knobs.transaction_headers]

    def leave(self) -> None:
        """The admitted request finished (or failed); frees its concurrency slot."""
        self.in_flight -= 1

    # ------------------------------------------------------------------ responses
    def _retry_headers(self, natural: str, seconds: float) -> dict[str, str]:
        name = self.knobs.retry_after_header or natural
        return {name: _seconds(seconds)}

    def _rate_limited(self, wait: float) -> Response:
        limit = self.knobs.rate_per_minute or 0
        headers = {"X-IA-Minute-Rate-Limit": str(limit), "X-IA-Minute-Rate-Limit-Remaining": "0"}
        headers |= self._retry_headers("Retry-After", wait)
        return error_response(
            429,
            "rateLimitExceeded",
            f"Rate limit of {limit} requests per minute exceeded",
            "GW-0010",
            headers=headers,
            message_id="IA.RATE_LIMIT_EXCEEDED",
        )

    def failure(self, status: int) -> Response:
        """The response for an injected status (429 throttle, 500, 503, or any other error)."""
        seconds = self.knobs.retry_after_seconds
        if status == 429:
            limit = str(self.knobs.max_concurrent or 0)
            headers = {"X-IA-Throttle-Limit": limit, "X-IA-Throttle-Limit-Remaining": "0"}
            headers |= self._retry_headers("X-IA-Throttle-Limit-RetryAfter", seconds)
            return error_response(
                429,
                "rateLimitExceeded",
                "Too many concurrent requests; retry later",
                "GW-0010",
                headers=headers,
                message_id="IA.THROTTLE_LIMIT_EXCEEDED",
            )
        if status == 503:
            return error_response(
                503,
                "serviceUnavailable",
                "The service is temporarily unavailable; retry later",
                "GW-0001",
                headers=self._retry_headers("Retry-After", seconds),
            )
        if status == 500:
            return error_response(
                500,
                "internalServerError",
                "An internal error occurred; quote the supportId when contacting support",
                "GW-0001",
            )
        code = _GENERIC_CODES.get(status, "error")
        return error_response(status, code, f"Injected {status} response", "GW-0001")


def dropping_send(send: Send) -> Send:
    """Wrap `send` so the response's headers and half its body go out, then the link dies.

    Raising after the response has started makes uvicorn log the error and close the transport,
    so the client sees a short body (httpx: RemoteProtocolError). A bodyless response (204) is
    delivered whole: there is nothing to cut.
    """

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.body":
            body: bytes = message.get("body", b"")
            if body:
                cut = max(1, len(body) // 2) if len(body) > 1 else 0
                await send({"type": "http.response.body", "body": body[:cut], "more_body": True})
                raise DroppedConnection("connection dropped by fault injection")
        await send(message)

    return wrapped


class _HideDroppedConnections(logging.Filter):
    """Keep uvicorn from printing a traceback for every deliberately dropped connection."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


def install_log_filter() -> None:
    """Attach the filter to uvicorn's error logger once per process."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDroppedConnections) for f in logger.filters):
        logger.addFilter(_HideDroppedConnections())
