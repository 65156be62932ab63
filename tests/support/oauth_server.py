"""A small, strict OAuth server on loopback for the auth tests.

It behaves like the parts of Intacct's OAuth we rely on, and is stricter where that finds
bugs: refresh tokens rotate and the old one is rejected with `invalid_grant` after one use, the
PKCE verifier is checked against the challenge, codes are single-use, and every token request
is counted so tests can assert "exactly one refresh". Tokens are JWT-shaped with `iat`/`exp`.
A `/ia/api/v1/ping` endpoint accepts only live bearer tokens (401 + `tokenInvalid` otherwise).

Use as a context manager; it listens on a free port of 127.0.0.1 and stops on exit (and, as a
safety net, by itself after `max_lifetime` seconds).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

API_PREFIX = "/ia/api/v1"
TOKEN_MARKER = "PLANTED"  # every issued token contains this, so leak checks can grep for it


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    method: str


@dataclass
class ServerState:
    """Everything the server remembers; tests read and tweak it directly."""

    access_tokens: dict[str, float] = field(default_factory=dict)  # token -> exp
    refresh_tokens: set[str] = field(default_factory=set)
    codes: dict[str, _Code] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    grants: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, str]] = field(default_factory=list)
    queued_failures: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


class OAuthTestServer:
    """Loopback OAuth server; see module docstring."""

    def __init__(
        self,
        *,
        client_id: str = "test-client-id",
        client_secret: str = "SECRET-client-9f3b2a",
        users: tuple[str, ...] = ("ws-user@ACME",),
        access_ttl: float = 3600.0,
        send_expires_in: bool = True,
        rotate_refresh_tokens: bool = True,
        send_refresh_token_on_refresh: bool = True,
        token_delay: float = 0.0,
        max_lifetime: float = 120.0,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.users = users
        self.access_ttl = access_ttl
        self.send_expires_in = send_expires_in
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.send_refresh_token_on_refresh = send_refresh_token_on_refresh
        self.token_delay = token_delay
        self.max_lifetime = max_lifetime
        self.state = ServerState()
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> OAuthTestServer:
        handler = _make_handler(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._timer = threading.Timer(self.max_lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if self._timer is not None:
            self._timer.cancel()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> OAuthTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    # -- test helpers ----------------------------------------------------------------------

    def token_requests(self, grant: str | None = None) -> int:
        with self.lock:
            if grant is None:
                return sum(self.state.grants.values())
            return self.state.grants[grant]

    def issue(self, *, subject: str = "user@ACME", with_refresh: bool = True) -> dict[str, Any]:
        """Mint tokens directly (as if a previous login happened)."""
        with self.lock:
            return self._issue_locked(subject, with_refresh=with_refresh)

    def expire_access_tokens(self) -> None:
        with self.lock:
            for token in self.state.access_tokens:
                self.state.access_tokens[token] = 0.0

    def fail_next_token_request(self, status: int, body: dict[str, Any]) -> None:
        with self.lock:
            self.state.queued_failures.append((status, body))

    def is_valid_access_token(self, token: str) -> bool:
        with self.lock:
            return self.state.access_tokens.get(token, 0.0) > time.time()

    def make_jwt(self, *, kind: str, iat: float, exp: float, subject: str = "user@ACME") -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = {
            "sub": subject,
            "iat": int(iat),
            "exp": int(exp),
            "typ": kind,
            "jti": f"{TOKEN_MARKER}-{kind}-{secrets.token_hex(8)}",
        }
        payload = _b64(json.dumps(claims).encode())
        return f"{header}.{payload}.{_b64(secrets.token_bytes(16))}"

    def _issue_locked(self, subject: str, *, with_refresh: bool) -> dict[str, Any]:
        now = time.time()
        access = self.make_jwt(kind="access", iat=now, exp=now + self.access_ttl, subject=subject)
        self.state.access_tokens[access] = now + self.access_ttl
        self.state.issued.append(access)
        body: dict[str, Any] = {"token_type": "Bearer", "access_token": access}
        if self.send_expires_in:
            body["expires_in"] = int(self.access_ttl)
        if with_refresh:
            refresh = self.make_jwt(kind="refresh", iat=now, exp=now + 86400 * 180)
            self.state.refresh_tokens.add(refresh)
            self.state.issued.append(refresh)
            body["refresh_token"] = refresh
        return body


def _make_handler(server: OAuthTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(
            self, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
        ) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == f"{API_PREFIX}/oauth2/authorize":
                self._authorize(query)
            elif parts.path == f"{API_PREFIX}/ping":
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ")
                if server.is_valid_access_token(token):
                    self._send(200, {"ok": True})
                else:
                    self._send(
                        401,
                        {
                            "ia::result": {
                                "ia::error": {
                                    "code": "tokenInvalid",
                                    "message": "Token is not valid",
                                    "errorId": "REST-2102",
                                }
                            }
                        },
                    )
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            form = self._form()
            if path == f"{API_PREFIX}/oauth2/token":
                self._token(form)
            elif path == f"{API_PREFIX}/oauth2/revoke":
                self._revoke(form)
            else:
                self._send(404, {"error": "not_found"})

        def _authorize(self, q: dict[str, str]) -> None:
            """Auto-consent: redirect straight back with a code (the user said yes)."""
            if (
                q.get("response_type") != "code"
                or q.get("client_id") != server.client_id
                or "offline_access" not in q.get("scope", "").split()
                or q.get("code_challenge_method") != "S256"
                or not q.get("code_challenge")
                or not q.get("redirect_uri")
            ):
                self._send(400, {"error": "invalid_request"})
                return
            code = secrets.token_urlsafe(16)
            with server.lock:
                server.state.codes[code] = _Code(
                    q["client_id"], q["redirect_uri"], q["code_challenge"], "S256"
                )
            location = (
                f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}"
            )
            self._send(302, None, {"Location": location})

        def _token(self, form: dict[str, str]) -> None:
            if server.token_delay:
                time.sleep(server.token_delay)
            with server.lock:
                server.state.bodies.append(dict(form))
                grant = form.get("grant_type", "")
                server.state.grants[grant] += 1
                if server.state.queued_failures:
                    status, body = server.state.queued_failures.pop(0)
                    self._send(status, body)
                    return
                if form.get("client_id") != server.client_id:
                    self._send(401, {"error": "invalid_client"})
                    return
                secret = form.get("client_secret")
                if grant != "authorization_code" and secret != server.client_secret:
                    self._send(401, {"error": "invalid_client"})
                    return
                if grant == "authorization_code":
                    status, body = self._code_grant(form)
                elif grant == "refresh_token":
                    status, body = self._refresh_grant(form)
                elif grant == "client_credentials":
                    if form.get("username") in server.users:
                        status, body = (
                            200,
                            server._issue_locked(form["username"], with_refresh=True),
                        )
                    else:
                        status, body = 401, {"error": "invalid_grant"}
                else:
                    status, body = 400, {"error": "unsupported_grant_type"}
            self._send(status, body)

        def _code_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
            code = server.state.codes.pop(form.get("code", ""), None)
            if code is None or code.redirect_uri != form.get("redirect_uri"):
                return 400, {"error": "invalid_grant"}
            verifier = form.get("code_verifier", "")
            expected = _b64(hashlib.sha256(verifier.encode()).digest())
            if expected != code.challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE mismatch"}
            if form.get("client_secret") not in (None, server.client_secret):
                return 401, {"error": "invalid_client"}
            return 200, server._issue_locked("user@ACME", with_refresh=True)

        def _refresh_grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
            refresh = form.get("refresh_token", "")
            if refresh not in server.state.refresh_tokens:
                return 400, {"error": "invalid_grant"}
            rotate = server.rotate_refresh_tokens and server.send_refresh_token_on_refresh
            if rotate:
                server.state.refresh_tokens.discard(refresh)
            body = server._issue_locked("user@ACME", with_refresh=rotate)
            if not server.send_refresh_token_on_refresh:
                body.pop("refresh_token", None)
            return 200, body

        def _revoke(self, form: dict[str, str]) -> None:
            if (
                form.get("client_id") != server.client_id
                or form.get("client_secret") != server.client_secret
            ):
                self._send(401, {"error": "invalid_client"})
                return
            token = form.get("token", "")
            with server.lock:
                server.state.revoked.append(token)
                server.state.refresh_tokens.discard(token)
                server.state.access_tokens.pop(token, None)
            self._send(200, {})

    return Handler
