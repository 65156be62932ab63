"""The API gateway in front of the routes: counting, fault injection and bearer-token checks.

Real Intacct does these in its gateway before a request reaches an application, and so does the
emulator: a pure ASGI middleware (no per-request Request object, so it costs microseconds) that
only looks at paths under the API prefix. `/_emulator/*` passes straight through: tests must be
able to read stats and lift faults while the API is failing on purpose.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from intacct_emulator.config import API_PREFIX
from intacct_emulator.faults import FaultInjector, dropping_send
from intacct_emulator.http_errors import error_response
from intacct_emulator.oauth import TOKEN_INVALID_ERROR_ID, OAuthServer, TokenRejectedError
from intacct_emulator.stats import RequestStats, stats_key

PRINCIPAL_SCOPE_KEY = "intacct.principal"
"""Where the validated token's Principal is stored in the ASGI scope for the handlers."""

_OAUTH_PREFIX = API_PREFIX + "/oauth2/"
_API_PREFIX_SLASH = API_PREFIX + "/"


class Gateway:
    """ASGI middleware; see the module docstring. Order: count, faults, auth, route."""

    def __init__(
        self, app: ASGIApp, *, oauth: OAuthServer, faults: FaultInjector, stats: RequestStats
    ) -> None:
        self.app = app
        self.oauth = oauth
        self.faults = faults
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(_API_PREFIX_SLASH):
            await self.app(scope, receive, send)
            return
        name = stats_key(scope["method"], path)
        status = 500  # what the client sees if the app dies before answering

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, counting_send, path)
        finally:
            self.stats.record(name, status)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        is_oauth = path.startswith(_OAUTH_PREFIX)
        if is_oauth and not self.faults.knobs.faults_on_oauth:
            await self.app(scope, receive, send)
            return
        admission = await self.faults.admit()
        if admission.rejection is not None:
            await admission.rejection(scope, receive, send)
            return
        try:
            if not is_oauth:
                try:
                    principal = self.oauth.principal(Headers(scope=scope).get("authorization"))
                except TokenRejectedError as rejected:
                    # Some tenants refuse an invalid/expired token with 400 REST-1206 instead
                    # of 401 (seen by integrators): `token_error_status: 400` reproduces it.
                    as_400 = (
                        self.faults.knobs.token_error_status == 400
                        and rejected.error_id == TOKEN_INVALID_ERROR_ID
                    )
                    response = error_response(
                        400 if as_400 else 401,
                        "invalidRequest" if as_400 else "tokenInvalid",
                        rejected.message,
                        rejected.error_id,
                        headers=None
                        if as_400
                        else {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                        message_id="IA.TOKEN_INVALID",
                    )
                    await response(scope, receive, send)
                    return
                scope[PRINCIPAL_SCOPE_KEY] = principal
            if admission.headers:
                send = _adding_headers(send, admission.headers)
            if admission.drop:
                send = dropping_send(send)
            await self.app(scope, receive, send)
        finally:
            self.faults.leave()


def _adding_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """Append the soft-limit headers (`X-IA-Throttle-Limit-Remaining`...) to the response."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped
