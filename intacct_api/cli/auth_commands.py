"""`intacct login`, `intacct token`, `intacct logout`: getting tokens into the shared store.

The tap and the target never open a browser; they refresh whatever this command stored. So
`login` is the one place where a person authorises the connection, either in a browser
(authorization code + PKCE, with `offline_access` so a refresh token comes back) or, for
server-to-server setups, with Intacct's client-credentials grant. Output shows status only:
which connection, which grant, how long the token lives, whether a refresh token exists;
never a token value.

Settings come from the shared CLI context (`intacct_api.cli.app.get_context`): global flags,
`INTACCT_*` environment variables and `--config`.
"""

from __future__ import annotations

import http.server
import socket
import sys
import threading
import time
import webbrowser
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import typer

from intacct_api.auth import TokenManager
from intacct_api.cli.app import echo_json, fail, get_context
from intacct_api.errors import IntacctError
from intacct_api.network_policy import is_loopback_host

DEFAULT_REDIRECT_URI = "http://127.0.0.1:8765/callback"
DEFAULT_WAIT_SECONDS = 300.0

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>intacct login</title></head>"
    "<body><h1>{title}</h1><p>{text}</p></body></html>"
)


class RedirectCatcher:
    """A one-shot loopback HTTP server that receives the browser's redirect after consent.

    It binds when constructed, before the browser is sent anywhere, so the redirect can never
    arrive at a closed port; with port 0 in the redirect URI it takes a free port and
    `redirect_uri` tells the real one (tests use that; real app registrations need a fixed
    port). Requests to other paths (favicon) are answered 404 and ignored.
    """

    def __init__(self, redirect_uri: str) -> None:
        parts = urlsplit(redirect_uri)
        host = parts.hostname
        if parts.scheme != "http" or not is_loopback_host(host):
            raise IntacctError(
                f"cannot catch the redirect to {redirect_uri} on this machine (it must be "
                "http://127.0.0.1:PORT/...); use --paste and paste the redirected URL instead"
            )
        assert host is not None  # for mypy: is_loopback_host(None) is False
        self._path = parts.path or "/"
        self._result: dict[str, str] | None = None
        self._server = self._make_server(host, 80 if parts.port is None else parts.port)
        port = self._server.server_address[1]
        netloc_host = f"[{host}]" if ":" in host else host
        self.redirect_uri = urlunsplit(("http", f"{netloc_host}:{port}", self._path, "", ""))

    def _make_server(self, host: str, port: int) -> http.server.HTTPServer:
        catcher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != catcher._path or catcher._result is not None:
                    self.send_error(404)
                    return
                params = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
                catcher._result = params
                ok = "code" in params and "error" not in params
                title = "Login complete" if ok else "Login failed"
                text = (
                    "You can close this tab and return to the terminal."
                    if ok
                    else "Return to the terminal for details."
                )
                body = _PAGE.format(title=title, text=text).encode()
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: the query string carries the authorization code."""

        server_cls: type[http.server.HTTPServer] = http.server.HTTPServer
        if ":" in host:

            class V6Server(http.server.HTTPServer):
                address_family = socket.AF_INET6

            server_cls = V6Server
        bind_host = "127.0.0.1" if host.lower().startswith("localhost") else host
        try:
            return server_cls((bind_host, port), Handler)
        except OSError as exc:
            raise IntacctError(
                f"cannot listen on {host}:{port} for the login redirect ({exc.strerror}); "
                "pick another port with --redirect-uri (it must match the app registration)"
            ) from None

    def wait(self, state: str, timeout: float = DEFAULT_WAIT_SECONDS) -> str:
        """Block until the redirect arrives; return the code after checking `state`."""
        deadline = time.monotonic() + timeout
        self._server.timeout = 0.2
        try:
            while self._result is None:
                if time.monotonic() >= deadline:
                    raise IntacctError(
                        f"no login redirect arrived within {timeout:g} s; run `intacct login` "
                        "again (or use --paste)"
                    )
                self._server.handle_request()
        finally:
            self.close()
        return code_from_params(self._result, state)

    def close(self) -> None:
        """Stop listening (idempotent)."""
        self._server.server_close()


def code_from_params(params: dict[str, str], state: str) -> str:
    """The authorization code from redirect parameters, refusing errors and a foreign state."""
    if "error" in params:
        description = params.get("error_description", "")
        raise IntacctError(f"authorization failed: {params['error']} {description}".strip())
    if params.get("state") != state:
        raise IntacctError(
            "the redirect's state does not match this login attempt (possible CSRF or an old "
            "browser tab); run `intacct login` again"
        )
    code = params.get("code")
    if not code:
        raise IntacctError("the redirect carried no authorization code")
    return code


def code_from_pasted_url(pasted: str, state: str) -> str:
    """Parse the URL the browser ended on (copied from its address bar)."""
    query = urlsplit(pasted.strip()).query
    params = {k: v[0] for k, v in parse_qs(query).items() if v}
    if not params:
        raise IntacctError("the pasted text is not a redirect URL with ?code=...&state=...")
    return code_from_params(params, state)


def _open_browser(url: str) -> None:
    """Open the browser without letting a missing browser break the login."""
    try:
        webbrowser.open(url)
    except webbrowser.Error:
        typer.echo("(could not open a browser; open the URL above yourself)", err=True)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds <= 0:
        return "expired"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {int(seconds) % 60:02d}s"


def _print_status(status: dict[str, Any]) -> None:
    if not status["logged_in"]:
        typer.echo(f"Not logged in for {status['key']} (store {status['store']}).")
        if status["client_credentials_configured"]:
            typer.echo("Client credentials are configured: a token is minted on first use.")
        return
    if status["has_access_token"]:
        valid = "valid" if status["access_token_valid"] else "stale"
        access = f"{valid}, expires in {_duration(status['expires_in'])}"
    else:
        access = "none (will be refreshed on first use)"
    typer.echo(f"Logged in: {status['key']}")
    typer.echo(f"  store:         {status['store']}")
    typer.echo(f"  grant:         {status['grant']}")
    typer.echo(f"  access token:  {access}")
    typer.echo(f"  refresh token: {'yes' if status['has_refresh_token'] else 'no'}")


def _manager(ctx: typer.Context) -> TokenManager:
    return TokenManager.for_settings(get_context(ctx).settings)


def login(
    ctx: typer.Context,
    *,
    client_credentials: Annotated[
        bool,
        typer.Option(
            "--client-credentials",
            help="Mint a token with the client-credentials grant (needs --username user@company).",
        ),
    ] = False,
    redirect_uri: Annotated[
        str,
        typer.Option(
            help="Redirect URI registered for the app. An http://127.0.0.1:PORT/... URI is "
            "caught here; for any other (Sage requires https for real apps) use --paste.",
        ),
    ] = DEFAULT_REDIRECT_URI,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the URL; do not open a browser.")
    ] = False,
    paste: Annotated[
        bool,
        typer.Option(
            "--paste", help="Read the URL the browser was redirected to from stdin (no server)."
        ),
    ] = False,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the browser redirect.")
    ] = DEFAULT_WAIT_SECONDS,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Authorise this machine and store tokens that the tap and the target will refresh."""
    try:
        manager = _manager(ctx)
        if client_credentials:
            manager.login_client_credentials()
        else:
            _browser_login(manager, redirect_uri, no_browser=no_browser, paste=paste, wait=wait)
        status = manager.status()
    except IntacctError as exc:
        fail(str(exc))
    if as_json:
        echo_json(status)
    else:
        _print_status(status)


def _browser_login(
    manager: TokenManager, redirect_uri: str, *, no_browser: bool, paste: bool, wait: float
) -> None:
    catcher = None if paste else RedirectCatcher(redirect_uri)
    try:
        if catcher is not None:
            redirect_uri = catcher.redirect_uri
        url, state, verifier = manager.authorization_url(redirect_uri)
        typer.echo("Open this URL in a browser and approve access:", err=True)
        typer.echo(url, err=True)
        if catcher is None:
            typer.echo("Then paste the full URL the browser was redirected to:", err=True)
            code = code_from_pasted_url(sys.stdin.readline(), state)
        else:
            if not no_browser:
                # A thread, because some webbrowser backends block until the browser exits.
                threading.Thread(target=_open_browser, args=(url,), daemon=True).start()
            typer.echo(f"Waiting for the redirect on {catcher.redirect_uri} ...", err=True)
            code = catcher.wait(state, wait)
    finally:
        if catcher is not None:
            catcher.close()
    manager.exchange_code(code, redirect_uri, verifier)


def token(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show the stored token status (never the token itself); exit 1 when not logged in."""
    try:
        status = _manager(ctx).status()
    except IntacctError as exc:
        fail(str(exc))
    if as_json:
        echo_json(status)
    else:
        _print_status(status)
    if not status["logged_in"]:
        raise typer.Exit(1)


POOLED_WARNING = (
    "Intacct pools tokens per user and company: revoking signs out EVERY session of {who} "
    "in that company (other tap/target runs, other machines and other applications that use "
    "this user must log in again)."
)


def logout(
    ctx: typer.Context,
    all_sessions: Annotated[
        bool,
        typer.Option(
            "--all-sessions",
            help="Confirm revoking at Intacct, which ends every session of this user and company.",
        ),
    ] = False,
    local_only: Annotated[
        bool,
        typer.Option(
            "--local-only",
            help="Only remove the tokens from the local store; revoke nothing at Intacct.",
        ),
    ] = False,
) -> None:
    """Revoke the stored tokens at Intacct and remove them from the token store.

    Revoking one token revokes all tokens of that user and company (Intacct pools them), so
    the command says so first and goes ahead only with ``--all-sessions`` or a confirmation
    at the prompt; ``--local-only`` forgets the tokens here without touching other sessions.
    """
    try:
        manager = _manager(ctx)
        had_tokens = manager.status()["logged_in"]
    except IntacctError as exc:
        fail(str(exc))
    if not had_tokens:
        typer.echo(f"No tokens stored for {manager.key}; nothing to do.")
        return
    if local_only:
        manager.forget()
        typer.echo(f"Removed the stored tokens of {manager.key}; nothing was revoked at Intacct.")
        return
    who = manager.settings.username or "the user who logged in"
    typer.echo(POOLED_WARNING.format(who=who), err=True)
    if not all_sessions:
        confirmed = sys.stdin.isatty() and typer.confirm(
            "Revoke all sessions of this user and company?", default=False, err=True
        )
        if not confirmed:
            fail(
                "not revoked: pass --all-sessions to revoke every session of this user and "
                "company, or --local-only to only remove the tokens stored here"
            )
    try:
        manager.revoke()
    except IntacctError as exc:
        fail(f"tokens removed from {manager.store.path}, but revoking at Intacct failed: {exc}")
    typer.echo(f"Logged out: {manager.key} (tokens revoked and removed).")


def register(app: typer.Typer) -> None:
    """Add `login`, `token` and `logout` to the `intacct` app."""
    app.command("login")(login)
    app.command("token")(token)
    app.command("logout")(logout)
