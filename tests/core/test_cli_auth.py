"""`intacct login / token / logout` against the loopback OAuth server, browser included."""

from __future__ import annotations

import io
import json
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from support.oauth_server import TOKEN_MARKER, OAuthTestServer
from typer.testing import CliRunner

from intacct_api.auth import TokenManager
from intacct_api.cli import auth_commands
from intacct_api.cli.app import global_options
from intacct_api.cli.auth_commands import RedirectCatcher, code_from_pasted_url
from intacct_api.errors import IntacctError
from intacct_api.token_store import TokenStore


@pytest.fixture
def server() -> Iterator[OAuthTestServer]:
    with OAuthTestServer() as srv:
        yield srv


def make_app() -> typer.Typer:
    """The lead's global options + our command group, without the other groups."""
    app = typer.Typer(pretty_exceptions_enable=False)
    app.callback()(global_options)
    auth_commands.register(app)
    return app


def env_for(server: OAuthTestServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "INTACCT_BASE_URL": server.base_url,
        "INTACCT_CLIENT_ID": server.client_id,
        "INTACCT_CLIENT_SECRET": server.client_secret,
        "INTACCT_TOKEN_STORE": str(tmp_path / "tokens.json"),
        "INTACCT_USERNAME": "",
    }
    env.update(extra)
    return env


def invoke(args: list[str], env: dict[str, str], stdin: str | None = None) -> Any:
    return CliRunner().invoke(make_app(), args, env=env, input=stdin)


def assert_no_secrets(server: OAuthTestServer, text: str) -> None:
    assert TOKEN_MARKER not in text
    assert server.client_secret not in text
    for token in server.state.issued:
        assert token not in text


def stored_tokens(tmp_path: Path, server: OAuthTestServer, username: str = "") -> Any:
    return TokenStore(tmp_path / "tokens.json").load(
        f"{server.base_url}|{server.client_id}|{username}"
    )


class FakeBrowser:
    """Stands in for webbrowser.open: follows the authorize URL like a consenting user."""

    def __init__(self) -> None:
        self.final: httpx.Response | None = None
        self.opened: list[str] = []
        self.done = threading.Event()

    def open(self, url: str) -> bool:
        self.opened.append(url)
        try:
            self.final = httpx.get(url, follow_redirects=True, timeout=10)
        finally:
            self.done.set()
        return True


def test_login_with_loopback_redirect_catcher(
    server: OAuthTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = FakeBrowser()
    monkeypatch.setattr(auth_commands.webbrowser, "open", browser.open)

    result = invoke(
        ["login", "--redirect-uri", "http://127.0.0.1:0/callback", "--wait", "20"],
        env_for(server, tmp_path),
    )

    assert result.exit_code == 0, result.output
    assert browser.done.wait(10)
    assert browser.final is not None
    assert browser.final.status_code == 200
    assert "Login complete" in browser.final.text
    assert str(browser.final.url).startswith("http://127.0.0.1:")
    assert "/callback?code=" in str(browser.final.url)
    assert "Logged in:" in result.output
    assert "refresh token: yes" in result.output
    assert server.token_requests("authorization_code") == 1
    exchange = server.state.bodies[-1]
    assert exchange["redirect_uri"] == str(browser.final.url).split("?")[0]
    assert exchange["code_verifier"]
    tokens = stored_tokens(tmp_path, server)
    assert tokens is not None
    assert tokens.grant == "authorization_code"
    assert server.is_valid_access_token(tokens.access_token)
    assert_no_secrets(server, result.output)


def test_login_no_browser_times_out_cleanly(
    server: OAuthTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    browser = FakeBrowser()
    monkeypatch.setattr(auth_commands.webbrowser, "open", browser.open)
    result = invoke(
        ["login", "--no-browser", "--redirect-uri", "http://127.0.0.1:0/cb", "--wait", "0.3"],
        env_for(server, tmp_path),
    )
    assert result.exit_code == 1
    assert "no login redirect arrived" in result.output
    assert f"{server.base_url}/oauth2/authorize?" in result.output
    assert browser.opened == []
    assert server.token_requests() == 0


def test_login_paste_mode(
    server: OAuthTestServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = TokenManager.authorization_url

    def authorize_then_paste(self: TokenManager, redirect_uri: str) -> tuple[str, str, str]:
        url, state, verifier = original(self, redirect_uri)
        # The "user" consents in a browser and pastes the URL it ended on into the terminal.
        location = httpx.get(url, follow_redirects=False).headers["Location"]
        sys.stdin = io.StringIO(location + "\n")  # CliRunner restores its own stdin after
        return url, state, verifier

    monkeypatch.setattr(TokenManager, "authorization_url", authorize_then_paste)
    redirect = "https://example.com/intacct/callback"
    result = invoke(
        ["login", "--paste", "--redirect-uri", redirect, "--json"],
        env_for(server, tmp_path),
        stdin="",
    )
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["logged_in"] is True
    assert status["grant"] == "authorization_code"
    assert server.state.bodies[-1]["redirect_uri"] == redirect
    assert_no_secrets(server, result.output)


def test_login_paste_rejects_foreign_state(server: OAuthTestServer, tmp_path: Path) -> None:
    result = invoke(
        ["login", "--paste"],
        env_for(server, tmp_path),
        stdin="http://127.0.0.1:8765/callback?code=abc&state=not-ours\n",
    )
    assert result.exit_code == 1
    assert "state does not match" in result.output
    assert server.token_requests() == 0


def test_login_client_credentials_then_token_then_logout(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    env = env_for(server, tmp_path, INTACCT_USERNAME="ws-user@ACME")
    result = invoke(["login", "--client-credentials"], env)
    assert result.exit_code == 0, result.output
    assert "grant:         client_credentials" in result.output
    assert server.state.bodies[-1]["username"] == "ws-user@ACME"

    result = invoke(["token", "--json"], env)
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert status["key"] == f"{server.base_url}|{server.client_id}|ws-user@ACME"
    assert status["has_refresh_token"] is True
    assert status["access_token_valid"] is True
    assert 3500 < status["expires_in"] <= 3600
    result_text = invoke(["token"], env).output
    assert re.search(r"access token:  valid, expires in (59m \d\ds|1h 00m)", result_text)

    tokens = stored_tokens(tmp_path, server, "ws-user@ACME")
    result = invoke(["logout", "--all-sessions"], env)
    assert result.exit_code == 0, result.output
    assert "Logged out" in result.output
    assert set(server.state.revoked) == {tokens.access_token, tokens.refresh_token}
    assert stored_tokens(tmp_path, server, "ws-user@ACME") is None

    result = invoke(["logout"], env)
    assert result.exit_code == 0
    assert "nothing to do" in result.output
    result = invoke(["token"], env)
    assert result.exit_code == 1
    assert "Not logged in" in result.output
    all_output = "".join(invoke(a, env).output for a in (["token"], ["token", "--json"]))
    assert_no_secrets(server, all_output + result.output)


def test_client_credentials_rejected_user(server: OAuthTestServer, tmp_path: Path) -> None:
    result = invoke(
        ["login", "--client-credentials"], env_for(server, tmp_path, INTACCT_USERNAME="x@Y")
    )
    assert result.exit_code == 1
    assert "intacct login" in result.output
    assert_no_secrets(server, result.output)


def test_insecure_store_is_reported_cleanly(server: OAuthTestServer, tmp_path: Path) -> None:
    env = env_for(server, tmp_path, INTACCT_USERNAME="ws-user@ACME")
    assert invoke(["login", "--client-credentials"], env).exit_code == 0
    (tmp_path / "tokens.json").chmod(0o644)
    result = invoke(["token"], env)
    assert result.exit_code == 1
    assert "chmod 600" in result.output
    assert_no_secrets(server, result.output)


def test_redirect_catcher_refuses_remote_redirect_uri() -> None:
    with pytest.raises(IntacctError, match="--paste"):
        RedirectCatcher("https://example.com/callback")


def test_redirect_catcher_reports_denied_consent() -> None:
    catcher = RedirectCatcher("http://127.0.0.1:0/callback")
    responses: list[httpx.Response] = []

    def deny() -> None:
        responses.append(httpx.get(f"{catcher.redirect_uri}?error=access_denied&state=s"))

    thread = threading.Thread(target=deny)
    thread.start()
    with pytest.raises(IntacctError, match="access_denied"):
        catcher.wait("s", timeout=10)
    thread.join(10)
    assert responses[0].status_code == 400


def test_redirect_catcher_ignores_other_paths_then_takes_the_code() -> None:
    catcher = RedirectCatcher("http://127.0.0.1:0/callback")
    statuses: list[int] = []

    def browse() -> None:
        statuses.append(
            httpx.get(catcher.redirect_uri.replace("/callback", "/favicon.ico")).status_code
        )
        statuses.append(httpx.get(f"{catcher.redirect_uri}?code=C0DE&state=st").status_code)

    thread = threading.Thread(target=browse)
    thread.start()
    assert catcher.wait("st", timeout=10) == "C0DE"
    thread.join(10)
    assert statuses == [404, 200]


def test_pasted_url_parsing() -> None:
    assert code_from_pasted_url("https://x/cb?code=abc&state=s\n", "s") == "abc"
    with pytest.raises(IntacctError, match="not a redirect URL"):
        code_from_pasted_url("hello", "s")
    with pytest.raises(IntacctError, match="no authorization code"):
        code_from_pasted_url("https://x/cb?state=s", "s")
