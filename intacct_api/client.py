"""The one HTTP client every API call goes through.

Centralising the client is what makes the cross-cutting rules enforceable: one connection pool
per settings, a process-wide bound on requests in flight (Intacct enforces concurrency per
company, so the tap's streams and the target's sinks must share it), the retry policy, the
401 refresh-once dance, and credential hygiene:

* the bearer token only ever goes to ``base_url``'s scheme, host and port: URLs are built here
  from ``base_url + path``, redirects are never followed (a 3xx is an error), and plain
  ``http://`` is refused unless the host is loopback;
* log lines carry method, path, status and duration, never headers, bodies or tokens.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol
from urllib.parse import quote

import httpx
import msgspec

from intacct_api.errors import (
    TOKEN_INVALID_ERROR_ID,
    ConfigError,
    IntacctAPIError,
    IntacctError,
    LoginRequiredError,
    ModelUnavailableError,
    TransportError,
    parse_error_response,
)
from intacct_api.network_policy import is_loopback_host
from intacct_api.retry import (
    MAX_PACE_SECONDS,
    THROTTLE_STATUSES,
    Pacer,
    RetryPolicy,
    Wait,
    retry_after_from_headers,
)

if TYPE_CHECKING:
    from intacct_api.settings import ConnectionSettings
    from intacct_api.spec import Operation, SpecRegistry

__all__ = [
    "DEFAULT_ENTITY",
    "ApiResponse",
    "IntacctClient",
    "TokenProvider",
]

logger = logging.getLogger(__name__)

QUERY_PATH: Final = "/services/core/query"
MODEL_PATH: Final = "/services/core/model"
ENTITY_HEADER: Final = "X-IA-API-Param-Entity"
TRANSACTION_HEADER: Final = "X-IA-API-Param-Transaction"
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 256
MAX_REFRESHES_PER_REQUEST: Final = 3
"""Token refreshes one request may trigger (one per refused token): enough for a token
invalidated again while a retry was backing off, bounded so a server that refuses every
token cannot loop."""

# Methods the server treats as idempotent, so a lost response can be re-sent safely.
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# POST endpoints that only read; re-sending them cannot create duplicates.
_READ_ONLY_POST_PATHS = frozenset({QUERY_PATH})
# Failures where the request certainly never reached the server.
_NOT_SENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
_PATH_PARAM = re.compile(r"\{([^{}]+)\}")
_JSON_DECODER = msgspec.json.Decoder()
_JSON_ENCODER = msgspec.json.Encoder()


class _Default(enum.Enum):
    """Sentinel type: "use the settings' entity", distinct from ``None`` (send no entity)."""

    ENTITY = "default-entity"


DEFAULT_ENTITY: Final = _Default.ENTITY
EntityArg = str | None | _Default


class TokenProvider(Protocol):
    """What the client needs from ``auth.TokenManager``; tests pass a trivial fake."""

    def access_token(self) -> str:
        """A currently valid access token (refreshing or minting one if needed)."""
        ...

    def handle_unauthorized(self, token_used: str) -> str:
        """Called after a 401 with the token that was refused; returns a fresh token."""
        ...


@dataclass
class ApiResponse:
    """A successful answer: status, headers (case-insensitive) and the raw body."""

    status: int
    headers: Mapping[str, str]
    content: bytes = field(repr=False)
    _decoded: Any = field(default=None, init=False, repr=False, compare=False)
    _is_decoded: bool = field(default=False, init=False, repr=False, compare=False)

    def json(self) -> Any:
        """The body decoded with msgspec (cached); ``{}`` for an empty body such as a 204."""
        if not self._is_decoded:
            self._decoded = _JSON_DECODER.decode(self.content) if self.content.strip() else {}
            self._is_decoded = True
        return self._decoded


def _validated_base_url(raw: str) -> httpx.URL:
    """Parse ``base_url`` and refuse anything that would send tokens in clear text."""
    try:
        url = httpx.URL(raw.rstrip("/"))
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(f"base_url {raw!r} is not a valid URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"base_url {raw!r} must be an absolute https:// URL")
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise ConfigError(
            f"base_url {raw!r} uses plain http:// to a non-loopback host; tokens would travel "
            "unencrypted. Use https:// (http:// is allowed only to loopback: localhost, "
            "*.localhost, 127.0.0.0/8, ::1)."
        )
    if url.query or url.fragment or url.userinfo:
        raise ConfigError(f"base_url {raw!r} must not contain credentials, a query or a fragment")
    return url


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = 443 if url.scheme == "https" else 80
    return (url.scheme, url.host, url.port or default_port)


def encode_path_value(value: Any) -> str:
    """Percent-encode one path parameter so data can never change the path.

    ``safe=""`` encodes ``/``, ``?``, ``#`` and ``..`` separators; a list or tuple is the
    comma-separated multi-key form (``/bill/1,2,3``): each key is encoded, then joined. A single
    value may not contain a comma at all: a server that decodes ``%2C`` before splitting keys
    would read ``"1,2"`` as two records, so such data is refused rather than sent.
    """
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        raise ConfigError("a list path parameter needs at least one value")
    for single in values:
        if "," in str(single):
            raise ConfigError(
                f"path value {str(single)!r} contains ',', which Intacct reads as a list of keys; "
                "pass several keys as separate values instead"
            )
    if isinstance(value, (list, tuple)):
        encoded = ",".join(quote(str(v), safe="") for v in values)
    else:
        encoded = quote(str(value), safe="")
    if encoded == "":
        raise ConfigError("path parameters cannot be empty")
    if encoded.strip(".") == "":
        # "." and ".." are unreserved, so quote() keeps them, and URL normalisation would then
        # treat them as dot segments and climb the path; %2E keeps them literal data.
        encoded = "%2E" * len(encoded)
    return encoded


def _operation_from_path(path: str) -> str:
    """Best-effort name of what a raw path touches, for error messages."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if len(parts) >= 3 and parts[0] in ("objects", "workflows"):
        return f"{parts[1]}/{parts[2]}"
    return "/".join(parts) or "/"


def _redirect_target(response: httpx.Response) -> str:
    """Host a redirect points to (for the message); never the full URL, which may carry data."""
    try:
        host = httpx.URL(response.headers.get("location", "")).host
    except httpx.InvalidURL:
        return "an invalid location"
    return host or "the same host"


def _freeze(value: Any) -> Any:
    """Hashable form of a settings value, for the :meth:`IntacctClient.shared` cache key."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(_freeze(v) for v in value)
    return value


def _settings_key(settings: ConnectionSettings) -> tuple[Any, ...]:
    if dataclasses.is_dataclass(settings):
        return tuple(
            (f.name, _freeze(getattr(settings, f.name))) for f in dataclasses.fields(settings)
        )
    return (id(settings),)


class IntacctClient:
    """Thread-safe Intacct REST client: pooling, concurrency bound, retries, error mapping."""

    _shared: ClassVar[dict[tuple[Any, ...], IntacctClient]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()
    _semaphores: ClassVar[dict[tuple[str, int], threading.BoundedSemaphore]] = {}
    _semaphores_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        token_manager: TokenProvider | None = None,
        registry: SpecRegistry | None = None,
        transport: httpx.BaseTransport | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self._base = _validated_base_url(settings.base_url)
        self._base_str = str(self._base).rstrip("/")
        self._origin = _origin(self._base)
        self._tokens = token_manager
        self._tokens_lock = threading.Lock()
        self._registry = registry
        self.retry_policy = retry_policy or RetryPolicy.from_settings(settings)
        self.pacer = Pacer()
        self._semaphore = self._semaphore_for(self._base_str, settings.max_concurrency)
        limit = max(1, int(settings.max_concurrency))
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(settings.timeout),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"IntacctClient(base_url={self._base_str!r})"

    # -- construction helpers --------------------------------------------------------------

    @classmethod
    def shared(cls, settings: ConnectionSettings) -> IntacctClient:
        """One client per distinct settings per process, so tap streams share pool and tokens."""
        key = _settings_key(settings)
        with cls._shared_lock:
            client = cls._shared.get(key)
            if client is None or client._closed:
                client = cls(settings)
                cls._shared[key] = client
            return client

    @classmethod
    def _semaphore_for(cls, base_url: str, max_concurrency: int) -> threading.BoundedSemaphore:
        """The in-flight bound is per API endpoint, shared by every client in the process.

        Intacct enforces concurrency per company, so every client for the same base URL (the
        tap's streams, the target's sinks, a second settings object) shares one semaphore.
        The key includes the bound itself so that each client honours its own setting.
        """
        with cls._semaphores_lock:
            key = (base_url, max(1, int(max_concurrency)))
            semaphore = cls._semaphores.get(key)
            if semaphore is None:
                semaphore = threading.BoundedSemaphore(key[1])
                cls._semaphores[key] = semaphore
            return semaphore

    def _token_provider(self) -> TokenProvider:
        """Build the real TokenManager lazily so import order and unused auth cost nothing."""
        with self._tokens_lock:
            if self._tokens is None:
                from intacct_api.auth import TokenManager

                self._tokens = TokenManager.for_settings(self.settings)
            return self._tokens

    def token_provider(self) -> TokenProvider:
        """The token provider this client uses (``intacct doctor`` exercises it directly)."""
        return self._token_provider()

    def spec_registry(self) -> SpecRegistry:
        """The spec registry this client resolves operations with."""
        return self._spec_registry()

    def _spec_registry(self) -> SpecRegistry:
        if self._registry is None:
            from intacct_api.spec import default_registry

            self._registry = default_registry(tuple(self.settings.spec_path or ()))
        return self._registry

    def close(self) -> None:
        """Close the connection pool; a closed shared client is replaced on next ``shared``."""
        self._closed = True
        self._http.close()
        with self._shared_lock:
            for key, client in list(self._shared.items()):
                if client is self:
                    del self._shared[key]

    def __enter__(self) -> IntacctClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- URL and header building -----------------------------------------------------------

    def url_for(self, path: str) -> str:
        """Absolute URL for an API path; refuses anything that could leave ``base_url``."""
        if not path.startswith("/") or path.startswith("//") or "://" in path.split("?", 1)[0]:
            raise ConfigError(
                f"API paths must be relative to base_url and start with '/': {path!r}"
            )
        url = self._base_str + path
        if _origin(httpx.URL(url)) != self._origin:  # pragma: no cover - defence in depth
            raise ConfigError(f"path {path!r} would leave base_url")
        return url

    def _headers(
        self,
        token: str,
        *,
        extra: Mapping[str, str] | None,
        entity: EntityArg,
        idempotency_key: str | None,
        transaction: bool,
        has_body: bool,
    ) -> dict[str, str]:
        headers: dict[str, str] = {
            "Accept": "application/json",
            "User-Agent": self.settings.user_agent,
        }
        if has_body:
            headers["Content-Type"] = "application/json"
        for name, value in (extra or {}).items():
            if name.lower() in ("authorization", "host"):
                raise ConfigError(f"header {name!r} is managed by the client")
            headers[name] = value
        chosen = self.settings.entity if entity is DEFAULT_ENTITY else entity
        headers = {k: v for k, v in headers.items() if k.lower() != ENTITY_HEADER.lower()}
        if chosen:
            headers[ENTITY_HEADER] = str(chosen)
        if idempotency_key is not None:
            if not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
                raise ConfigError("Idempotency-Key must be 1 to 256 characters long")
            headers[IDEMPOTENCY_HEADER] = idempotency_key
        if transaction:
            headers[TRANSACTION_HEADER] = "true"
        headers["Authorization"] = f"Bearer {token}"
        return headers

    # -- the request loop ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        entity: EntityArg = DEFAULT_ENTITY,
        idempotency_key: str | None = None,
        transaction: bool = False,
        operation: str | None = None,
        expected: tuple[int, ...] = (200, 201, 204, 207),
        form: Mapping[str, str] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> ApiResponse:
        """Send one API request with retries; return the answer or raise.

        ``form``/``files`` send a multipart/form-data body instead of JSON (the bulk service:
        ``intacct_api.bulk``); everything else (auth, retries, error parsing) is the same.

        Retries: 429/503 wait as the server asks; 500/502/504 and lost connections back off.
        A lost response (or 5xx) is re-sent only when that cannot duplicate a write: idempotent
        methods, the read-only query service, or requests carrying an ``Idempotency-Key``.
        A 401 (or a 400 REST-1206, how some tenants refuse a token) triggers a token refresh
        and a re-send; a later 401 (the token invalidated again
        while backing off) refreshes again, once per new token and at most
        ``MAX_REFRESHES_PER_REQUEST`` times. Raises :class:`IntacctAPIError` (status, Intacct
        code/errorId, ``operation``), :class:`LoginRequiredError` when the grant is gone,
        :class:`TransportError` when the server cannot be reached. The raised error's
        ``outcome_unknown`` is true when a write may have been executed by an earlier attempt.
        """
        if self._closed:
            raise ConfigError("this IntacctClient has been closed")
        method = method.upper()
        url = self.url_for(path)
        log_path = path.split("?", 1)[0]
        what = operation or _operation_from_path(path)
        content = None if json is None else _JSON_ENCODER.encode(json)
        resendable = (
            method in _IDEMPOTENT_METHODS
            or idempotency_key is not None
            or (method == "POST" and log_path in _READ_ONLY_POST_PATHS)
        )
        provider = self._token_provider()
        token = ""
        retries = 0  # bounds the attempts
        backoffs = 0  # our own escalating waits only: a server-directed 429 wait does not count
        refreshes = 0
        refused_tokens: set[str] = set()  # each token triggers at most one refresh
        use_refreshed_token = False
        writes = method not in _IDEMPOTENT_METHODS and log_path not in _READ_ONLY_POST_PATHS
        maybe_executed = False  # an attempt of this write may have been executed by Intacct
        while True:
            # Ask for the token on every attempt: a retry after a long throttle wait may need
            # a renewed one. Right after a 401 the refreshed token is used as returned.
            if not use_refreshed_token:
                token = provider.access_token()
            use_refreshed_token = False
            request_headers = self._headers(
                token,
                extra=headers,
                entity=entity,
                idempotency_key=idempotency_key,
                transaction=transaction,
                has_body=content is not None,
            )
            pace = self.pacer.reserve(min(self.retry_policy.max_wait, MAX_PACE_SECONDS))
            if pace is not None:
                logger.info(
                    "%s %s: waiting %.1f s (%s)", method, log_path, pace.seconds, pace.reason
                )
                self.retry_policy.pause(pace)
            started = time.monotonic()
            try:
                with self._semaphore:
                    response = self._http.request(
                        method,
                        url,
                        params=params,
                        content=content,
                        data=form,
                        files=files,
                        headers=request_headers,
                    )
                    body = response.read()
            except httpx.TransportError as exc:
                elapsed = time.monotonic() - started
                kind = type(exc).__name__
                logger.debug("%s %s -> %s after %.3f s", method, log_path, kind, elapsed)
                not_sent = isinstance(exc, _NOT_SENT_ERRORS)
                maybe_executed = maybe_executed or (writes and not not_sent)
                retryable = resendable or not_sent
                if not retryable or not self.retry_policy.can_retry(retries):
                    attempts = retries + 1
                    failure = TransportError(
                        f"{what}: {method} {log_path} failed after {attempts} attempt"
                        f"{'s' if attempts != 1 else ''}: {kind}: {exc}"
                    )
                    failure.outcome_unknown = maybe_executed
                    raise failure from exc
                wait = self.retry_policy.wait_for_exception(exc, backoffs)
                self._wait(wait, kind, method, log_path)
                backoffs += wait.backoff
                retries += 1
                continue
            elapsed = time.monotonic() - started
            status = response.status_code
            logger.debug("%s %s -> %d in %.3f s", method, log_path, status, elapsed)
            self.pacer.observe(response.headers)

            if status in expected:
                return ApiResponse(status=status, headers=response.headers, content=body)

            if status == 401 or (status == 400 and self._token_refused(response, body, what)):
                if token not in refused_tokens and refreshes < MAX_REFRESHES_PER_REQUEST:
                    refused_tokens.add(token)
                    refreshes += 1
                    try:
                        token = provider.handle_unauthorized(token)
                    except IntacctError as exc:
                        exc.outcome_unknown = maybe_executed
                        raise
                    if token not in refused_tokens:  # a new token: send again with it
                        use_refreshed_token = True
                        continue
                error = self._error(response, body, what)
                error.outcome_unknown = maybe_executed
                if error.is_login_required():
                    login = LoginRequiredError(api_error=error)
                    login.outcome_unknown = maybe_executed
                    raise login from error
                raise error

            if 300 <= status < 400:
                raise IntacctAPIError(
                    status,
                    f"HTTP {status} redirect to {_redirect_target(response)} refused: the client "
                    "never follows redirects so the access token stays with base_url",
                    operation=what,
                )

            if writes and status >= 500:
                # Intacct may have executed the write before failing (or a 503 may come from
                # a layer after it): assumed, so only a later answer can settle the outcome.
                maybe_executed = True
            if self.retry_policy.is_retryable_status(status):
                throttled = status in THROTTLE_STATUSES
                if status == 429 and self._error(response, body, what).is_too_large:
                    throttled = resendable = False  # waiting cannot help: the caller must split
                if (throttled or resendable) and self.retry_policy.can_retry(retries):
                    wait = self.retry_policy.wait_for_status(status, response.headers, backoffs)
                    self._wait(wait, str(status), method, log_path)
                    backoffs += wait.backoff
                    retries += 1
                    continue
            error = self._error(response, body, what)
            error.outcome_unknown = maybe_executed
            raise error

    def _token_refused(self, response: httpx.Response, body: bytes, operation: str) -> bool:
        """A 400 that refuses the access token (REST-1206), handled exactly like a 401."""
        if TOKEN_INVALID_ERROR_ID.encode() not in body:
            return False
        return self._error(response, body, operation).is_token_invalid()

    def _wait(self, wait: Wait, cause: str, method: str, path: str) -> None:
        """Log the pause once at WARNING (outside the concurrency slot) and sleep."""
        logger.warning(
            "%s from %s %s: waiting %.1f s (%s)", cause, method, path, wait.seconds, wait.reason
        )
        self.retry_policy.pause(wait)

    def _error(self, response: httpx.Response, body: bytes, operation: str) -> IntacctAPIError:
        retry_after = None
        if response.status_code in THROTTLE_STATUSES:
            asked = retry_after_from_headers(response.headers)
            retry_after = asked.seconds if asked is not None else None
        return parse_error_response(
            response.status_code,
            body,
            operation=operation,
            content_type=response.headers.get("content-type"),
            retry_after=retry_after,
        )

    # -- spec-driven calls -----------------------------------------------------------------

    def call(
        self,
        operation_id: str,
        *,
        path_params: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        entity: EntityArg = DEFAULT_ENTITY,
        idempotency_key: str | None = None,
        transaction: bool = False,
    ) -> ApiResponse:
        """Call any operation by its operationId, routing parameters by the spec's locations.

        Values from ``path_params`` and ``query`` are pooled and each goes where the spec
        declares it (path, query or header); undeclared names go to the query string. Path
        values are percent-encoded so ``"../x"`` or ``"1,2"`` stay data; a list is the
        comma-separated multi-key form. Missing required parameters raise one ConfigError
        naming all of them.
        """
        op = self._spec_registry().operation(operation_id)
        path, query_params, header_params = route_parameters(
            op, {**(query or {}), **(path_params or {})}, headers or {}
        )
        return self.request(
            op.method,
            path,
            params=query_params or None,
            json=body,
            headers=header_params or None,
            entity=entity,
            idempotency_key=idempotency_key,
            transaction=transaction,
            operation=op.object_name or op.operation_id,
        )

    def query(self, body: Mapping[str, Any], *, entity: EntityArg = DEFAULT_ENTITY) -> ApiResponse:
        """POST a query-service body; errors name the queried object."""
        name = body.get("object") if isinstance(body, Mapping) else None
        return self.request(
            "POST",
            QUERY_PATH,
            json=body,
            entity=entity,
            operation=str(name) if name else "core/query",
        )

    def model(self, object_name: str, *, schema: bool = True) -> dict[str, Any]:
        """The live model of one object (``ia::result`` of ``/services/core/model``).

        An object the tenant lacks (not subscribed, not enabled) is answered HTTP 200 with
        ``{"ia::result": []}`` rather than an error status; that raises
        :class:`ModelUnavailableError` (status 404), which callers treat like a 403: skip the
        object with one warning.
        """
        response = self.request(
            "GET",
            MODEL_PATH,
            params={"name": object_name, "schema": "true" if schema else "false"},
            operation=object_name,
        )
        payload = response.json()
        result = payload.get("ia::result") if isinstance(payload, Mapping) else None
        if result in ([], {}):
            raise ModelUnavailableError(object_name, response.status)
        if not isinstance(result, dict):
            raise IntacctAPIError(
                response.status,
                "model service answer has no ia::result object",
                operation=object_name,
            )
        return result


def _missing_message(operation_id: str, missing: Iterable[str]) -> str:
    names = ", ".join(sorted(missing))
    return f"{operation_id}: missing required parameter(s): {names}"


def route_parameters(
    op: Operation, values: Mapping[str, Any], headers: Mapping[str, str]
) -> tuple[str, dict[str, Any], dict[str, str]]:
    """Fill the operation's path template and split ``values`` into query and header params.

    Returns ``(path, query_params, header_params)``. Raises ConfigError naming every missing
    required parameter at once, so a CLI user fixes them in one go.
    """
    declared = {p.name: p for p in op.parameters}
    template_names = _PATH_PARAM.findall(op.path)
    query_params: dict[str, Any] = {}
    header_params: dict[str, str] = dict(headers)
    lower_headers = {k.lower() for k in headers}
    missing: list[str] = []

    for param in op.parameters:
        if not param.required:
            continue
        present = (
            param.name.lower() in lower_headers or param.name in values
            if param.location == "header"
            else param.name in values and values[param.name] is not None
        )
        if not present:
            missing.append(param.name)
    missing.extend(n for n in template_names if n not in declared and values.get(n) is None)
    if missing:
        raise ConfigError(_missing_message(op.operation_id, dict.fromkeys(missing)))

    path_values: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        location = declared[name].location if name in declared else None
        if name in template_names or location == "path":
            if name not in template_names:
                raise ConfigError(f"{op.operation_id}: path parameter {name!r} is not in {op.path}")
            path_values[name] = encode_path_value(value)
        elif location == "header":
            header_params[name] = _header_value(value)
        else:
            query_params[name] = _query_value(value)

    path = _PATH_PARAM.sub(lambda m: path_values[m.group(1)], op.path)
    return path, query_params, header_params


def _header_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return [_query_value(v) for v in value]
    if isinstance(value, (str, int, float)):
        return value
    return str(value)
