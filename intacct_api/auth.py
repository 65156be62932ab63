"""OAuth 2.0 against Intacct: the grant HTTP calls and the per-process TokenManager.

Two layers:

* `OAuthGrants` performs the token-endpoint calls (authorization code + PKCE, refresh token,
  Intacct's client-credentials variant with `username`, revoke). Bodies are built and token
  responses parsed by oauthlib's clients (the engine under requests-oauthlib); the HTTP POST
  goes through a plain `requests.Session`. We deliberately do not call
  `OAuth2Session.fetch_token`/`request`: they log the whole request body - client secret and
  refresh token - at DEBUG, and they refuse plain http even to the loopback emulator.
* `TokenManager` hands out a valid access token and refreshes it *single-flight*: one thread
  of one process refreshes while holding the token store's lock, persists a rotated refresh
  token before releasing it, and every other thread/process re-reads the store and uses the
  fresh token instead of spending the (possibly already rotated) refresh token a second time.
  Anything that only a new login can fix becomes `LoginRequiredError`, never a retry loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import threading
import time
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

import requests
from oauthlib.oauth2 import (
    BackendApplicationClient,
    OAuth2Error,
    WebApplicationClient,
)

from intacct_api.errors import (
    ConfigError,
    IntacctAPIError,
    IntacctError,
    LoginRequiredError,
    TransportError,
    parse_error_response,
)
from intacct_api.network_policy import require_secure_url
from intacct_api.settings import ConnectionSettings, default_token_store_path
from intacct_api.token_store import TokenSet, TokenStore, token_key

__all__ = [
    "EXPIRY_SKEW_SECONDS",
    "OAuthGrants",
    "TokenManager",
    "jwt_claims",
]

LOGGER = logging.getLogger(__name__)

EXPIRY_SKEW_SECONDS = 60.0
"""Treat a token as expired this long before it really is, so it cannot expire in flight."""

OFFLINE_SCOPE = "offline_access"  # Intacct only returns a refresh token with this scope
LOGIN_HINT = "run `intacct login` again"
_CLIENT_ERROR_CODES = frozenset({"invalid_client", "unauthorized_client"})


def jwt_claims(token: str | None) -> dict[str, Any]:
    """The (unverified) claims of a JWT, or {} for anything else.

    Used only to learn `exp`/`iat` when the token response has no `expires_in` or when tokens
    come from config; we never trust the claims for authorisation, so no signature check.
    """
    if not token:
        return {}
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def _numeric_claim(token: str | None, name: str) -> float | None:
    value = jwt_claims(token).get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class OAuthGrants:
    """Stateless OAuth calls for one connection; returns TokenSets, raises our errors.

    Why not reuse singer-sdk's OAuthAuthenticator: it ignores rotated refresh tokens, has no
    lock, no expiry skew and cannot do the `username` client-credentials variant.
    """

    def __init__(
        self, settings: ConnectionSettings, session: requests.Session | None = None
    ) -> None:
        self.settings = settings
        self._session = session or requests.Session()
        self._session.headers.update({"User-Agent": settings.user_agent})

    def __repr__(self) -> str:
        return f"OAuthGrants(base_url={self.settings.base_url!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    # -- authorization code + PKCE ---------------------------------------------------------

    def authorization_url(
        self, redirect_uri: str, state: str | None = None
    ) -> tuple[str, str, str]:
        """(authorize URL, state, code_verifier) for a browser login with PKCE S256."""
        client = WebApplicationClient(self._client_id())
        verifier = client.create_code_verifier(64)
        challenge = client.create_code_challenge(verifier, "S256")
        state = state or secrets.token_urlsafe(24)
        authorize = self.settings.oauth_url("authorize")
        require_secure_url(authorize, "OAuth credentials")
        # Built by hand: oauthlib's prepare_request_uri refuses http, even to the loopback
        # emulator. The parameters are exactly what oauthlib would send.
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client.client_id,
                "redirect_uri": redirect_uri,
                "state": state,
                "scope": OFFLINE_SCOPE,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{authorize}?{query}", state, verifier

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> TokenSet:
        """Trade an authorization code (+ PKCE verifier) for tokens."""
        client = WebApplicationClient(self._client_id())
        body = client.prepare_request_body(
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
            include_client_id=True,
            client_secret=self.settings.client_secret,
        )
        return self._token_request(client, body, grant="authorization_code")

    # -- refresh + client credentials ------------------------------------------------------

    def refresh(self, refresh_token: str) -> TokenSet:
        """Use a refresh token; the result's refresh_token is None when the server sent none."""
        client = WebApplicationClient(self._client_id())
        body = client.prepare_refresh_body(
            refresh_token=refresh_token,
            client_id=client.client_id,
            client_secret=self.settings.client_secret,
        )
        return self._token_request(client, body, grant="refresh_token")

    def client_credentials(self) -> TokenSet:
        """Intacct's client-credentials grant: client id/secret in the body plus `username`."""
        if not (self.settings.client_secret and self.settings.username):
            raise ConfigError(
                "client credentials need client_id, client_secret and username "
                "(user@company or user@company|entity)"
            )
        client = BackendApplicationClient(self._client_id())
        body = client.prepare_request_body(
            include_client_id=True,
            client_secret=self.settings.client_secret,
            username=self.settings.username,
        )
        return self._token_request(client, body, grant="client_credentials")

    # -- revoke ----------------------------------------------------------------------------

    def revoke(self, token: str) -> None:
        """POST /oauth2/revoke with client_id, client_secret and the token."""
        url = self.settings.oauth_url("revoke")
        data = {"client_id": self._client_id(), "token": token}
        if self.settings.client_secret:
            data["client_secret"] = self.settings.client_secret
        response = self._post(url, data)
        if response.status_code >= 400:
            raise parse_error_response(
                response.status_code,
                response.content,
                operation="oauth2/revoke",
                content_type=response.headers.get("Content-Type"),
            )

    # -- plumbing --------------------------------------------------------------------------

    def _client_id(self) -> str:
        if not self.settings.client_id:
            raise ConfigError("client_id is not set (flag --client-id, INTACCT_CLIENT_ID, config)")
        return self.settings.client_id

    def _post(self, url: str, data: dict[str, str] | str) -> requests.Response:
        require_secure_url(url, "OAuth credentials")
        try:
            response = self._session.post(
                url,
                data=data,
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                },
                timeout=self.settings.timeout,
                # Never follow: a 307 would re-send the form body (client secret, refresh
                # token) to whatever host the Location names.
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            # The exception text of requests names the URL only, never the form body.
            raise TransportError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
        if response.is_redirect or 300 <= response.status_code < 400:
            target = urlsplit(response.headers.get("Location", "")).netloc or "another location"
            raise TransportError(
                f"{url} answered HTTP {response.status_code} redirecting to {target}: refused, "
                "credentials are only ever sent to the configured base URL"
            )
        return response

    def _token_request(
        self, client: WebApplicationClient | BackendApplicationClient, body: str, *, grant: str
    ) -> TokenSet:
        url = self.settings.oauth_url("token")
        started = time.time()
        response = self._post(url, body)
        content_type = response.headers.get("Content-Type")
        failure = self._failure(response.status_code, response.content, content_type)
        if failure is not None:
            raise self._classify(failure, grant)
        try:
            token = client.parse_request_body_response(response.text)
        except (OAuth2Error, Warning, ValueError) as exc:
            raise IntacctError(
                f"token endpoint answered HTTP {response.status_code} without a usable access "
                f"token ({type(exc).__name__})"
            ) from None
        access = token.get("access_token")
        expires_in = token.get("expires_in")
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            expires_at: float | None = started + float(expires_in)
        else:
            expires_at = _numeric_claim(access, "exp")
        scope = token.get("scope")
        return TokenSet(
            access_token=access,
            refresh_token=token.get("refresh_token") or None,
            expires_at=expires_at,
            token_type=str(token.get("token_type") or "Bearer"),
            scope=" ".join(scope) if isinstance(scope, list) else scope,
            obtained_at=started,
            grant=grant,
        )

    @staticmethod
    def _failure(status: int, content: bytes, content_type: str | None) -> IntacctAPIError | None:
        """An error for a non-2xx answer or a 2xx that carries an error envelope, else None."""
        if status >= 400:
            return parse_error_response(
                status, content, operation="oauth2/token", content_type=content_type
            )
        try:
            payload = json.loads(content or b"{}")
        except ValueError:
            return None  # let oauthlib try (form-encoded answers from old servers)
        if isinstance(payload, dict) and (
            "error" in payload or "ia::error" in payload or "ia::result" in payload
        ):
            return parse_error_response(
                status, content, operation="oauth2/token", content_type=content_type
            )
        return None

    def _classify(self, error: IntacctAPIError, grant: str) -> IntacctError:
        """invalid_grant / REST-2102 mean "log in again"; invalid_client means fix the config."""
        if error.is_login_required():
            if grant == "client_credentials":
                advice = (
                    "the client-credentials grant was rejected; check client_id, client_secret "
                    "and username, then run `intacct login --client-credentials` again"
                )
            else:
                advice = (
                    "the stored grant is no longer valid (expired, revoked or superseded by a "
                    f"newer login); {LOGIN_HINT}"
                )
            return LoginRequiredError(f"{error}: {advice}", api_error=error)
        if (error.code or "").lower() in _CLIENT_ERROR_CODES:
            return ConfigError(f"{error}: check client_id and client_secret")
        return error


class TokenManager:
    """Valid access tokens for one connection, shared by all threads (use `for_settings`).

    Memory holds the last token seen; the store is the source of truth whenever that token is
    stale, so a token refreshed by another process is picked up instead of refreshed again.
    """

    _instances: ClassVar[dict[tuple[Any, ...], TokenManager]] = {}
    _instances_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        settings: ConnectionSettings,
        store: TokenStore | None = None,
        *,
        session: requests.Session | None = None,
        skew: float = EXPIRY_SKEW_SECONDS,
    ) -> None:
        self.settings = settings
        self.store = store or TokenStore(settings.token_store or default_token_store_path())
        self.key = token_key(settings)
        self.skew = skew
        self._grants = OAuthGrants(settings, session)
        self._cached: TokenSet | None = None
        self._seed_lock = threading.Lock()
        self._seeded = False

    @classmethod
    def for_settings(cls, settings: ConnectionSettings) -> TokenManager:
        """The process-wide manager for these settings (one refresh flight per connection)."""
        cache_key = (
            settings.base_url,
            settings.client_id,
            settings.client_secret,
            settings.username,
            settings.token_store,
            settings.access_token,
            settings.refresh_token,
            settings.timeout,
            settings.user_agent,
        )
        with cls._instances_lock:
            manager = cls._instances.get(cache_key)
            if manager is None:
                manager = cls(settings)
                cls._instances[cache_key] = manager
            return manager

    def __repr__(self) -> str:
        return f"TokenManager(key={self.key!r}, store={str(self.store.path)!r})"

    # -- the API client's side -------------------------------------------------------------

    def access_token(self) -> str:
        """A token valid for at least `skew` seconds more, refreshing/minting if needed."""
        cached = self._cached
        if cached is not None and self._fresh(cached):
            return str(cached.access_token)
        self._seed_from_config()
        stored = self.store.load(self.key)
        if stored is not None and self._fresh(stored):
            self._cached = stored
            return str(stored.access_token)
        return self._renew(seen=stored.access_token if stored else None, force=False)

    def handle_unauthorized(self, token_used: str) -> str:
        """After a 401 with `token_used`: adopt a token someone else refreshed, else refresh once.

        Callers retry their request once with the returned token and give up on a second 401.
        """
        self._seed_from_config()
        return self._renew(seen=token_used, force=True)

    # -- interactive login / logout --------------------------------------------------------

    def authorization_url(self, redirect_uri: str) -> tuple[str, str, str]:
        """(url, state, code_verifier) for `intacct login`."""
        return self._grants.authorization_url(redirect_uri)

    def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> TokenSet:
        """Finish a browser login and store the tokens (replacing older ones for this key)."""
        with self.store.locked():
            tokens = self._grants.exchange_code(code, redirect_uri, code_verifier)
            self._persist(tokens, previous=None)
        return tokens

    def login_client_credentials(self) -> TokenSet:
        """Mint a token with the client-credentials grant and store it."""
        with self.store.locked():
            tokens = self._grants.client_credentials()
            self._persist(tokens, previous=None)
        return tokens

    def revoke(self) -> None:
        """Revoke the stored tokens at Intacct and remove them from the store.

        The local copy is removed even when the server call fails (the error is re-raised
        afterwards), so `intacct logout` always leaves no usable secret on disk.
        """
        with self.store.locked():
            stored = self.store.load(self.key)
            self._cached = None
            if stored is None:
                return
            failure: IntacctError | None = None
            try:
                for token in (stored.refresh_token, stored.access_token):
                    if token:
                        try:
                            self._grants.revoke(token)
                        except IntacctError as exc:
                            failure = failure or exc
            finally:
                self.store.delete(self.key)
            LOGGER.info("Removed tokens for %s from %s", self.key, self.store.path)
            if failure is not None:
                raise failure

    def refresh_now(self) -> TokenSet:
        """Refresh with the stored refresh token, without any fallback (`intacct doctor`).

        The new tokens are stored before returning: a rotated refresh token must never live
        only in memory. Raises LoginRequiredError when no refresh token is stored.
        """
        with self.store.locked():
            current = self.store.load(self.key)
            if current is None or not current.refresh_token:
                raise LoginRequiredError(f"no refresh token stored for {self.key}")
            tokens = self._grants.refresh(current.refresh_token)
            self._persist(tokens, previous=current)
            return tokens

    def forget(self) -> None:
        """Remove the stored tokens without revoking them (other sessions stay valid)."""
        with self.store.locked():
            self._cached = None
            self.store.delete(self.key)
        LOGGER.info("Removed tokens for %s from %s (not revoked)", self.key, self.store.path)

    def status(self) -> dict[str, Any]:
        """What `intacct token` shows: timing and presence flags, never a token value."""
        stored = self.store.load(self.key)
        now = time.time()
        expires_in = stored.expires_in(now) if stored else None
        return {
            "key": self.key,
            "store": str(self.store.path),
            "logged_in": stored is not None and bool(stored.access_token or stored.refresh_token),
            "grant": stored.grant if stored else None,
            "has_access_token": bool(stored and stored.access_token),
            "access_token_valid": bool(stored and self._fresh(stored, now)),
            "expires_at": stored.expires_at if stored else None,
            "expires_in": None if expires_in is None else int(expires_in),
            "has_refresh_token": bool(stored and stored.refresh_token),
            "obtained_at": stored.obtained_at if stored else None,
            "scope": stored.scope if stored else None,
            "client_credentials_configured": self.settings.uses_client_credentials,
        }

    def close(self) -> None:
        """Release the HTTP connections of the grant session."""
        self._grants.close()

    # -- internals -------------------------------------------------------------------------

    def _fresh(self, tokens: TokenSet, now: float | None = None) -> bool:
        if not tokens.access_token:
            return False
        if tokens.expires_at is None:  # unknown lifetime: use it until the server says 401
            return True
        return tokens.expires_at - self.skew > (time.time() if now is None else now)

    def _renew(self, *, seen: str | None, force: bool) -> str:
        """Single flight: under the store lock, re-read; refresh only if still stale/`seen`."""
        with self.store.locked():
            current = self.store.load(self.key)
            if (
                current is not None
                and self._fresh(current)
                and (not force or current.access_token != seen)
            ):
                self._cached = current  # another thread or process already refreshed
                return str(current.access_token)
            tokens = self._obtain(current)
            # Persist before the lock is released: a rotated refresh token must never exist
            # only in this process's memory.
            self._persist(tokens, previous=current)
            return str(tokens.access_token)

    def _obtain(self, current: TokenSet | None) -> TokenSet:
        refresh_token = current.refresh_token if current else None
        if refresh_token:
            try:
                return self._grants.refresh(refresh_token)
            except IntacctError as exc:
                # Under client credentials the refresh token is a convenience: whatever the
                # reason it was refused (invalid_grant, a 400, a 5xx, a dropped connection),
                # one new client-credentials grant is tried before failing.
                if not self.settings.uses_client_credentials:
                    raise
                LOGGER.info(
                    "Refresh for %s was refused (%s); minting a new token with client credentials",
                    self.key,
                    exc,
                )
        if self.settings.uses_client_credentials:
            return self._grants.client_credentials()
        raise LoginRequiredError(
            f"no usable token for {self.key} in {self.store.path} (no refresh token and no "
            f"client credentials configured): {LOGIN_HINT}"
        )

    def _persist(self, tokens: TokenSet, *, previous: TokenSet | None) -> None:
        how = tokens.grant
        rotated = "none"
        if tokens.refresh_token is None and previous is not None:
            tokens.refresh_token = previous.refresh_token  # server kept the old one
            rotated = "kept" if previous.refresh_token else "none"
        elif tokens.refresh_token is not None:
            rotated = (
                "unchanged"
                if previous is not None and previous.refresh_token == tokens.refresh_token
                else "new"
            )
        if tokens.grant == "refresh_token" and previous is not None and previous.grant:
            tokens.grant = previous.grant  # keep how the chain started, for `intacct token`
        self.store.save(self.key, tokens)
        self._cached = tokens
        remaining = tokens.expires_in()
        LOGGER.info(
            "Obtained access token for %s via %s (expires in %s, refresh token %s)",
            self.key,
            how,
            "unknown" if remaining is None else f"{int(remaining)}s",
            rotated,
        )

    def _seed_from_config(self) -> None:
        """Put config-supplied tokens in the store unless the store already has newer ones.

        Config tokens carry no timestamp; their JWT `iat` (or nothing) stands in. Tokens of
        unknown age never override stored ones: the store is updated on every refresh, the
        config file is not.
        """
        if self._seeded:
            return
        with self._seed_lock:
            if self._seeded:
                return
            access, refresh = self.settings.access_token, self.settings.refresh_token
            if access or refresh:
                with self.store.locked():
                    stored = self.store.load(self.key)
                    issued = _numeric_claim(access, "iat") or _numeric_claim(refresh, "iat")
                    seed = TokenSet(
                        access_token=access,
                        refresh_token=refresh,
                        expires_at=_numeric_claim(access, "exp"),
                        obtained_at=issued if issued is not None else time.time(),
                        grant="config",
                    )
                    if stored is None or (
                        issued is not None
                        and issued > stored.obtained_at
                        and (stored.access_token, stored.refresh_token) != (access, refresh)
                    ):
                        self.store.save(self.key, seed)
                        self._cached = None
                        LOGGER.info("Seeded token store for %s from config", self.key)
            self._seeded = True
