"""OAuth 2.0 as Intacct runs it: authorize, token (three grants), revoke, bearer validation.

What the emulator reproduces, and why each matters to a client:

* `client_credentials` with Intacct's non-standard `username` (`user@company[|entity]`), which
  also returns a refresh token (seen in recorded traffic).
* `authorization_code` with PKCE (S256 and plain); `/authorize` consents automatically. A refresh
  token is issued only when `offline_access` is in the scope, as Sage's guide says.
* Refresh-token rotation: a used refresh token is dead; reusing it is `invalid_grant` (401).
* Revocation is pooled: revoking any token revokes every token of that user and company.
* REST-2102: a second auth-code authorization for the same user+company kills the older one
  (its refresh tokens give `invalid_grant`, its access tokens give 401 REST-2102), which is the
  trap Nango documented and clients must treat as "log in again".
* Tokens are JWT-shaped (`header.payload.signature`, HMAC-SHA256 with a per-process key) so
  clients can read `exp`, but validity is decided by the in-memory table: a restart of the
  emulator invalidates every token (clients must cope with that like with a revoked token).

Bearer rejections and their error ids (all `code: tokenInvalid`, HTTP 401). The GW codes are
the meanings Sage's error-handling guide gives them; the id of an unknown/expired/revoked token
is assumed to be REST-1206, the id integrators saw when such a token came back as HTTP 400 (the
`token_error_status: 400` fault switch answers those cases with 400, as those tenants do):

=====================================  =========  =====================================
case                                   errorId    message
=====================================  =========  =====================================
no `Authorization: Bearer ...` header  GW-0034    Invalid Authorization Header
bearer value is not a decodable JWT    GW-0031    Invalid Token
unknown token (never issued, restart)  REST-1206  Invalid access token
expired (lifetime or expire-now knob)  REST-1206  Access token expired
revoked through `/oauth2/revoke`       REST-1206  Access token revoked
superseded by a newer authorization    REST-2102  Token is not valid
=====================================  =========  =====================================
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec

from intacct_emulator.config import (
    DEFAULT_REFRESH_TOKEN_LIFETIME,
    DEFAULT_TOKEN_LIFETIME,
    ClientConfig,
)

TOKEN_INVALID_ERROR_ID = "REST-1206"  # noqa: S105 - an error id, not a secret
"""errorId of a well-formed bearer token the API does not accept (unknown, expired, revoked)."""

CODE_LIFETIME = 600.0
"""Seconds an authorization code stays redeemable (RFC 6749 recommends at most 10 minutes)."""

_SWEEP_THRESHOLD = 20000
"""Token-table size above which expired entries are dropped, so long benchmarks stay flat."""


class OAuthError(Exception):
    """An OAuth-style failure of the token/authorize/revoke endpoints (`{"error": ...}`)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        """The RFC 6749 error body; Intacct answers `{"error": "invalid_grant"}` (401)."""
        return {"error": self.error, "error_description": self.description}


class TokenRejectedError(Exception):
    """A bearer token the API refuses; carries the Intacct error id documented above."""

    def __init__(self, error_id: str, message: str) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message


@dataclass
class Principal:
    """Who a valid access token speaks for; the HTTP layer hands this to handlers."""

    client_id: str
    user: str
    company: str
    entity: str | None


@dataclass
class _Authorization:
    """One consent (auth code) or one client-credentials login; tokens hang off it."""

    id: str
    grant: str
    client_id: str
    user: str
    company: str
    public_pkce: bool = False
    superseded: bool = False
    tokens: set[str] = field(default_factory=set)


@dataclass
class _Token:
    kind: str  # "access" | "refresh"
    authorization: _Authorization
    entity: str | None
    scope: str | None
    expires_at: float
    revoked: bool = False


@dataclass
class _Code:
    client_id: str
    redirect_uri: str | None
    challenge: str | None
    challenge_method: str
    user: str
    company: str
    entity: str | None
    scope: str | None
    expires_at: float


def split_username(username: str) -> tuple[str, str, str | None]:
    """`user@company|entity` -> (user, company, entity); raises ValueError when malformed."""
    principal, _, entity = username.partition("|")
    user, at, company = principal.rpartition("@")
    if not at or not user or not company:
        raise ValueError("username must look like user@company or user@company|entity")
    return user, company, entity or None


def _decodable_jwt(raw: str) -> bool:
    """True when `raw` is three base64url segments whose first two decode to JSON objects."""
    parts = raw.split(".")
    if len(parts) != 3:
        return False
    try:
        for part in parts[:2]:
            decoded = msgspec.json.decode(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            if not isinstance(decoded, dict):
                return False
    except (ValueError, msgspec.DecodeError):
        return False
    return True


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_challenge(verifier: str, method: str = "S256") -> str:
    """The code challenge for `verifier` (RFC 7636); exposed for tests and the demo."""
    if method == "plain":
        return verifier
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


class OAuthServer:
    """In-memory authorization server. Not thread-safe: the event loop is its only caller."""

    def __init__(
        self,
        clients: Iterable[ClientConfig],
        *,
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
        refresh_token_lifetime: float = DEFAULT_REFRESH_TOKEN_LIFETIME,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clients = {c.client_id: c for c in clients}
        self.token_lifetime = token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._tokens: dict[str, _Token] = {}
        self._codes: dict[str, _Code] = {}
        self._current_consent: dict[tuple[str, str], _Authorization] = {}
        self.refresh_failure: Callable[[], int | None] = lambda: None
        """Fault switch (`refresh_failure`): the status every refresh grant is refused with."""

    # ------------------------------------------------------------------ lifecycle knobs
    def reset(self) -> None:
        """Forget every token, code and authorization (the `/_emulator/reset` behaviour)."""
        self._tokens.clear()
        self._codes.clear()
        self._current_consent.clear()

    def expire_all(self) -> int:
        """Make every issued access token expired now; returns how many were live."""
        now = self._clock()
        count = 0
        for token in self._tokens.values():
            if token.kind == "access" and token.expires_at > now:
                token.expires_at = now - 0.001
                count += 1
        return count

    # ------------------------------------------------------------------ authorize
    def authorize(self, params: Mapping[str, str]) -> str:
        """Consent automatically and return the redirect URL carrying `code` and `state`.

        Errors about the client or the redirect URI raise OAuthError (shown to the user, never
        redirected, as RFC 6749 §4.1.2.1 requires); the consenting user is the client's
        configured user unless `login_hint`/`username` names another `user@company[|entity]`.
        """
        client = self._client(params.get("client_id"))
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri or not urlsplit(redirect_uri).scheme:
            raise OAuthError(400, "invalid_request", "redirect_uri is required")
        if params.get("response_type") != "code":
            raise OAuthError(400, "unsupported_response_type", "response_type must be code")
        method = params.get("code_challenge_method") or "plain"
        challenge = params.get("code_challenge")
        if challenge and method not in ("S256", "plain"):
            raise OAuthError(400, "invalid_request", "code_challenge_method must be S256 or plain")
        user, company, entity = self._user(
            params.get("username") or params.get("login_hint") or client.username
        )
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            challenge=challenge,
            challenge_method=method,
            user=user,
            company=company,
            entity=entity,
            scope=params.get("scope"),
            expires_at=self._clock() + CODE_LIFETIME,
        )
        query = {"code": code}
        if params.get("state") is not None:
            query["state"] = params["state"]
        parts = urlsplit(redirect_uri)
        joined = f"{parts.query}&{urlencode(query)}" if parts.query else urlencode(query)
        return urlunsplit(parts._replace(query=joined))

    # ------------------------------------------------------------------ token endpoint
    def token(self, params: Mapping[str, str], basic: tuple[str, str] | None) -> dict[str, Any]:
        """Run one token request (form or JSON already decoded into `params`)."""
        grant = params.get("grant_type")
        if grant == "client_credentials":
            return self._client_credentials(params, basic)
        if grant == "authorization_code":
            return self._authorization_code(params, basic)
        if grant == "refresh_token":
            return self._refresh(params, basic)
        if not grant:
            raise OAuthError(400, "invalid_request", "grant_type is required")
        raise OAuthError(400, "unsupported_grant_type", "unsupported grant_type")

    def _client_credentials(
        self, params: Mapping[str, str], basic: tuple[str, str] | None
    ) -> dict[str, Any]:
        client, authenticated = self._authenticate_client(params, basic)
        if not authenticated:
            raise OAuthError(401, "invalid_client", "client authentication failed")
        username = params.get("username")
        if not username:
            raise OAuthError(400, "invalid_request", "username (user@company) is required")
        user, company, entity = self._user(username)
        allowed_user, allowed_company, _ = split_username(client.username)
        if (user.lower(), company.lower()) != (allowed_user.lower(), allowed_company.lower()):
            raise OAuthError(401, "invalid_grant", "user is not authorized for this client")
        authorization = _Authorization(
            id=secrets.token_hex(8),
            grant="client_credentials",
            client_id=client.client_id,
            user=user,
            company=company,
        )
        return self._issue(authorization, entity, params.get("scope"), refresh=True)

    def _authorization_code(
        self, params: Mapping[str, str], basic: tuple[str, str] | None
    ) -> dict[str, Any]:
        client, authenticated = self._authenticate_client(params, basic)
        code = self._codes.pop(params.get("code") or "", None)
        if code is None or code.expires_at < self._clock():
            raise OAuthError(401, "invalid_grant", "authorization code is invalid or expired")
        if code.client_id != client.client_id:
            raise OAuthError(
                401, "invalid_grant", "authorization code was issued to another client"
            )
        if code.redirect_uri and params.get("redirect_uri") not in (None, code.redirect_uri):
            raise OAuthError(401, "invalid_grant", "redirect_uri does not match")
        if code.challenge:
            verifier = params.get("code_verifier")
            if not verifier or not hmac.compare_digest(
                pkce_challenge(verifier, code.challenge_method), code.challenge
            ):
                raise OAuthError(401, "invalid_grant", "code_verifier does not match")
        elif not authenticated:
            raise OAuthError(401, "invalid_client", "client authentication failed")
        authorization = _Authorization(
            id=secrets.token_hex(8),
            grant="authorization_code",
            client_id=client.client_id,
            user=code.user,
            company=code.company,
            public_pkce=not authenticated,
        )
        consent_key = (code.user.lower(), code.company.lower())
        older = self._current_consent.get(consent_key)
        if older is not None:
            older.superseded = True
        self._current_consent[consent_key] = authorization
        refresh = "offline_access" in (code.scope or "").split()
        return self._issue(authorization, code.entity, code.scope, refresh=refresh)

    def _refresh(self, params: Mapping[str, str], basic: tuple[str, str] | None) -> dict[str, Any]:
        client, authenticated = self._authenticate_client(params, basic)
        refused = self.refresh_failure()
        if refused is not None:
            error = {400: "invalid_request", 401: "invalid_grant"}.get(refused, "server_error")
            raise OAuthError(refused, error, "refresh refused (fault injection)")
        raw = params.get("refresh_token") or ""
        old = self._tokens.get(raw)
        if (
            old is None
            or old.kind != "refresh"
            or old.revoked
            or old.authorization.superseded
            or old.expires_at < self._clock()
        ):
            raise OAuthError(
                401, "invalid_grant", "refresh token is invalid, expired, revoked or already used"
            )
        authorization = old.authorization
        if authorization.client_id != client.client_id:
            raise OAuthError(401, "invalid_grant", "refresh token was issued to another client")
        if not authenticated and not authorization.public_pkce:
            raise OAuthError(401, "invalid_client", "client authentication failed")
        del self._tokens[raw]
        authorization.tokens.discard(raw)
        entity = params.get("entity_id") or old.entity
        return self._issue(authorization, entity, old.scope, refresh=True)

    # ------------------------------------------------------------------ revoke
    def revoke(self, params: Mapping[str, str], basic: tuple[str, str] | None) -> None:
        """Revoke a token (RFC 7009), and with it every token of the same user and company.

        Intacct pools tokens per user and company: revoking one ends all of that user's
        sessions in that company, other logins and other clients included (Nango's write-up,
        citing Sage's OAuth guide). That is why `intacct logout` warns before revoking.
        """
        client, authenticated = self._authenticate_client(params, basic)
        if not authenticated:
            raise OAuthError(401, "invalid_client", "client authentication failed")
        token = self._tokens.get(params.get("token") or "")
        if token is None or token.authorization.client_id != client.client_id:
            return  # RFC 7009 §2.2: unknown tokens are not an error
        pool = (token.authorization.user.lower(), token.authorization.company.lower())
        for other in self._tokens.values():
            if (other.authorization.user.lower(), other.authorization.company.lower()) == pool:
                other.revoked = True

    # ------------------------------------------------------------------ bearer validation
    def principal(self, authorization_header: str | None) -> Principal:
        """Validate an `Authorization` header; raises TokenRejectedError with Intacct's error id."""
        scheme, _, raw = (authorization_header or "").partition(" ")
        raw = raw.strip()
        if scheme.lower() != "bearer" or not raw:
            raise TokenRejectedError("GW-0034", "Invalid Authorization Header")
        token = self._tokens.get(raw)
        if token is None and not _decodable_jwt(raw):
            raise TokenRejectedError("GW-0031", "Invalid Token")
        if token is None or token.kind != "access":
            raise TokenRejectedError(TOKEN_INVALID_ERROR_ID, "Invalid access token")
        if token.revoked:
            raise TokenRejectedError(TOKEN_INVALID_ERROR_ID, "Access token revoked")
        if token.authorization.superseded:
            raise TokenRejectedError("REST-2102", "Token is not valid")
        if token.expires_at <= self._clock():
            raise TokenRejectedError(TOKEN_INVALID_ERROR_ID, "Access token expired")
        auth = token.authorization
        return Principal(auth.client_id, auth.user, auth.company, token.entity)

    # ------------------------------------------------------------------ helpers
    def _client(self, client_id: str | None) -> ClientConfig:
        client = self.clients.get(client_id or "")
        if client is None:
            raise OAuthError(401, "invalid_client", "unknown client_id")
        return client

    def _authenticate_client(
        self, params: Mapping[str, str], basic: tuple[str, str] | None
    ) -> tuple[ClientConfig, bool]:
        """Find the client (Basic header or body) and say whether its secret was proven."""
        client_id = params.get("client_id")
        secret = params.get("client_secret")
        if basic is not None:
            if client_id and client_id != basic[0]:
                raise OAuthError(400, "invalid_request", "client_id differs from Basic auth")
            client_id, secret = basic
        client = self._client(client_id)
        if secret is None:
            return client, False
        if not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
            raise OAuthError(401, "invalid_client", "client authentication failed")
        return client, True

    @staticmethod
    def _user(username: str) -> tuple[str, str, str | None]:
        try:
            return split_username(username)
        except ValueError as exc:
            raise OAuthError(400, "invalid_request", str(exc)) from None

    def _issue(
        self, authorization: _Authorization, entity: str | None, scope: str | None, *, refresh: bool
    ) -> dict[str, Any]:
        now = self._clock()
        if len(self._tokens) > _SWEEP_THRESHOLD:
            self._sweep(now)
        access = self._mint(
            "access",
            authorization=authorization,
            entity=entity,
            scope=scope,
            now=now,
            lifetime=self.token_lifetime,
        )
        body: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": max(0, round(self.token_lifetime)),
        }
        if refresh:
            body["refresh_token"] = self._mint(
                "refresh",
                authorization=authorization,
                entity=entity,
                scope=scope,
                now=now,
                lifetime=self.refresh_token_lifetime,
            )
        return body

    def _mint(
        self,
        kind: str,
        *,
        authorization: _Authorization,
        entity: str | None,
        scope: str | None,
        now: float,
        lifetime: float,
    ) -> str:
        expires_at = now + lifetime
        claims: dict[str, Any] = {
            "iss": "intacct-emulator",
            "sub": f"{authorization.user}@{authorization.company}",
            "userId": authorization.user,
            "company": authorization.company,
            "client_id": authorization.client_id,
            "token_use": kind,
            "iat": int(now),
            "exp": int(expires_at),
            "jti": secrets.token_urlsafe(12),
        }
        if entity:
            claims["entity"] = entity
        header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
        payload = _b64url(msgspec.json.encode(claims))
        signing_input = f"{header}.{payload}".encode("ascii")
        signature = _b64url(hmac.new(self._key, signing_input, hashlib.sha256).digest())
        raw = f"{header}.{payload}.{signature}"
        self._tokens[raw] = _Token(kind, authorization, entity, scope, expires_at)
        authorization.tokens.add(raw)
        return raw

    def _sweep(self, now: float) -> None:
        for raw in [r for r, t in self._tokens.items() if t.expires_at < now]:
            token = self._tokens.pop(raw)
            token.authorization.tokens.discard(raw)
