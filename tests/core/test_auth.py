"""TokenManager and the OAuth grants against a strict loopback OAuth server."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from support.oauth_server import TOKEN_MARKER, OAuthTestServer

from intacct_api.auth import TokenManager, jwt_claims
from intacct_api.errors import ConfigError, IntacctAPIError, LoginRequiredError
from intacct_api.settings import ConnectionSettings
from intacct_api.token_store import TokenSet, TokenStore


@pytest.fixture
def server() -> Iterator[OAuthTestServer]:
    with OAuthTestServer() as srv:
        yield srv


def make_settings(
    server: OAuthTestServer, tmp_path: Path, **overrides: object
) -> ConnectionSettings:
    values: dict[str, object] = {
        "base_url": server.base_url,
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "token_store": str(tmp_path / "tokens.json"),
        "timeout": 10.0,
    }
    values.update(overrides)
    return ConnectionSettings(**values)  # type: ignore[arg-type]


def seed_store(
    manager: TokenManager, server: OAuthTestServer, *, expires_in: float = 3600.0
) -> TokenSet:
    """Tokens as if `intacct login` ran earlier; `expires_in` < 0 makes the access token stale."""
    body = server.issue()
    tokens = TokenSet(
        access_token=body["access_token"],
        refresh_token=body["refresh_token"],
        expires_at=time.time() + expires_in,
        obtained_at=time.time() - 10,
        grant="authorization_code",
    )
    manager.store.save(manager.key, tokens)
    return tokens


def ping(server: OAuthTestServer, token: str) -> int:
    return httpx.get(
        f"{server.base_url}/ping", headers={"Authorization": f"Bearer {token}"}
    ).status_code


# -- reuse, expiry, refresh ----------------------------------------------------------------


def test_valid_token_is_reused_without_requests(server: OAuthTestServer, tmp_path: Path) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    seeded = seed_store(manager, server)
    assert manager.access_token() == seeded.access_token
    assert manager.access_token() == seeded.access_token
    assert server.token_requests() == 0


def test_refresh_rotates_and_persists_refresh_token(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    settings = make_settings(server, tmp_path)
    manager = TokenManager(settings)
    old = seed_store(manager, server, expires_in=-1)

    token = manager.access_token()

    assert token != old.access_token
    assert ping(server, token) == 200
    assert server.token_requests("refresh_token") == 1
    stored = manager.store.load(manager.key)
    assert stored is not None
    assert stored.access_token == token
    assert stored.refresh_token not in (None, old.refresh_token)
    assert old.refresh_token not in server.state.refresh_tokens  # old one is now dead
    assert stored.grant == "authorization_code"  # chain origin kept for `intacct token`
    assert stored.expires_at is not None
    assert stored.expires_at == pytest.approx(time.time() + server.access_ttl, abs=5)

    # A fresh manager (next process) uses the persisted, rotated refresh token successfully.
    server.expire_access_tokens()
    stored.expires_at = time.time() - 1
    manager.store.save(manager.key, stored)
    again = TokenManager(settings).access_token()
    assert ping(server, again) == 200
    assert server.token_requests("refresh_token") == 2


def test_missing_refresh_token_in_response_keeps_old_one(tmp_path: Path) -> None:
    with OAuthTestServer(send_refresh_token_on_refresh=False) as server:
        manager = TokenManager(make_settings(server, tmp_path))
        old = seed_store(manager, server, expires_in=-1)
        manager.access_token()
        stored = manager.store.load(manager.key)
        assert stored is not None
        assert stored.refresh_token == old.refresh_token
        assert server.token_requests("refresh_token") == 1


def test_token_within_skew_is_refreshed(server: OAuthTestServer, tmp_path: Path) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    seeded = seed_store(manager, server, expires_in=45)  # < 60 s skew: treat as expired
    token = manager.access_token()
    assert token != seeded.access_token
    assert server.token_requests("refresh_token") == 1


def test_expiry_over_time_triggers_refresh(tmp_path: Path) -> None:
    with OAuthTestServer(access_ttl=1) as server:
        manager = TokenManager(make_settings(server, tmp_path), skew=0.0)
        seed_store(manager, server, expires_in=0.6)
        first = manager.access_token()
        assert server.token_requests() == 0
        time.sleep(0.7)
        second = manager.access_token()
        assert second != first
        assert server.token_requests("refresh_token") == 1


def test_jwt_exp_is_used_when_expires_in_is_absent(tmp_path: Path) -> None:
    with OAuthTestServer(send_expires_in=False, access_ttl=1234) as server:
        manager = TokenManager(make_settings(server, tmp_path))
        seed_store(manager, server, expires_in=-1)
        token = manager.access_token()
        stored = manager.store.load(manager.key)
        assert stored is not None
        assert stored.expires_at == jwt_claims(token)["exp"]
        assert stored.expires_at == pytest.approx(time.time() + 1234, abs=5)


def test_jwt_claims_tolerates_garbage() -> None:
    assert jwt_claims(None) == {}
    assert jwt_claims("opaque") == {}
    assert jwt_claims("a.!!!.c") == {}
    assert jwt_claims("a." + base64.urlsafe_b64encode(b"[1]").decode() + ".c") == {}


# -- 401 handling and login-required ---------------------------------------------------------


def test_handle_unauthorized_refreshes_once(server: OAuthTestServer, tmp_path: Path) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    seeded = seed_store(manager, server)
    token = manager.access_token()
    server.expire_access_tokens()  # server-side invalidation the client cannot see
    assert ping(server, token) == 401

    new = manager.handle_unauthorized(token)

    assert new != seeded.access_token
    assert ping(server, new) == 200
    assert server.token_requests("refresh_token") == 1
    # A second 401 report for the same old token (another thread) adopts the new token.
    assert manager.handle_unauthorized(token) == new
    assert server.token_requests() == 1


def test_handle_unauthorized_adopts_token_refreshed_by_another_process(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    settings = make_settings(server, tmp_path)
    mine = TokenManager(settings)
    seeded = seed_store(mine, server)
    assert mine.access_token() == seeded.access_token
    other = TokenManager(settings)  # stands in for another process sharing the store
    fresh = other.handle_unauthorized(seeded.access_token)
    assert server.token_requests() == 1
    assert mine.handle_unauthorized(seeded.access_token) == fresh
    assert server.token_requests() == 1


def test_invalid_grant_is_login_required_without_retry(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    manager.store.save(
        manager.key,
        TokenSet(access_token=None, refresh_token="not-known-to-the-server", grant="x"),
    )
    with pytest.raises(LoginRequiredError) as info:
        manager.access_token()
    assert "intacct login" in str(info.value)
    assert "invalid_grant" in str(info.value)
    assert server.token_requests() == 1
    with pytest.raises(LoginRequiredError):
        manager.handle_unauthorized("whatever")
    assert server.token_requests() == 2  # one per call: never a loop


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, {"error": "invalid_grant"}),
        (
            401,
            {
                "ia::result": {
                    "ia::error": {
                        "code": "tokenInvalid",
                        "message": "Token is not valid",
                        "errorId": "REST-2102",
                    }
                },
                "ia::meta": {"totalCount": 1, "totalError": 1},
            },
        ),
        (400, {"error": {"code": "tokenInvalid", "errorId": "REST-2102", "message": "bad"}}),
    ],
)
def test_token_endpoint_login_errors(
    server: OAuthTestServer, tmp_path: Path, status: int, body: dict[str, object]
) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    seed_store(manager, server, expires_in=-1)
    server.fail_next_token_request(status, body)
    with pytest.raises(LoginRequiredError, match="intacct login"):
        manager.access_token()
    assert server.token_requests() == 1


def test_other_token_endpoint_errors_keep_their_details(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    seed_store(manager, server, expires_in=-1)
    server.fail_next_token_request(
        503, {"ia::error": {"code": "GW-0001", "message": "Service unavailable"}}
    )
    with pytest.raises(IntacctAPIError) as info:
        manager.access_token()
    assert info.value.status == 503
    assert not isinstance(info.value, LoginRequiredError)


def test_invalid_client_is_a_config_error(server: OAuthTestServer, tmp_path: Path) -> None:
    manager = TokenManager(make_settings(server, tmp_path, client_secret="wrong"))
    seed_store(manager, server, expires_in=-1)
    with pytest.raises(ConfigError, match="client_secret"):
        manager.access_token()


def test_no_refresh_token_and_no_client_credentials(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    with pytest.raises(LoginRequiredError, match="intacct login"):
        manager.access_token()
    assert server.token_requests() == 0


# -- client credentials -----------------------------------------------------------------------


def test_client_credentials_mint_sends_username_form_encoded(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    manager = TokenManager(make_settings(server, tmp_path, username="ws-user@ACME"))
    token = manager.access_token()
    assert ping(server, token) == 200
    body = server.state.bodies[-1]
    assert body == {
        "grant_type": "client_credentials",
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "username": "ws-user@ACME",
    }
    stored = manager.store.load(manager.key)
    assert stored is not None
    assert stored.grant == "client_credentials"
    assert stored.refresh_token  # Intacct returns one even here


def test_client_credentials_fall_back_when_refresh_token_is_dead(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    manager = TokenManager(make_settings(server, tmp_path, username="ws-user@ACME"))
    manager.store.save(manager.key, TokenSet(access_token=None, refresh_token="dead"))
    token = manager.access_token()
    assert ping(server, token) == 200
    assert server.token_requests("refresh_token") == 1
    assert server.token_requests("client_credentials") == 1


def test_client_credentials_unknown_user_is_login_required(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    manager = TokenManager(make_settings(server, tmp_path, username="nobody@ACME"))
    with pytest.raises(LoginRequiredError, match="intacct login"):
        manager.access_token()
    assert server.token_requests() == 1


# -- single flight ----------------------------------------------------------------------------


def test_many_threads_refresh_once(tmp_path: Path) -> None:
    with OAuthTestServer(token_delay=0.2) as server:
        manager = TokenManager(make_settings(server, tmp_path))
        seed_store(manager, server, expires_in=-1)
        barrier = threading.Barrier(16)
        results: list[str] = []
        errors: list[BaseException] = []

        def worker() -> None:
            barrier.wait()
            try:
                results.append(manager.access_token())
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        assert len(results) == 16
        assert len(set(results)) == 1
        assert server.token_requests() == 1
        assert ping(server, results[0]) == 200


_CHILD = textwrap.dedent(
    """
    import json, sys
    from intacct_api.auth import TokenManager
    from intacct_api.settings import ConnectionSettings

    settings = ConnectionSettings(**json.loads(sys.argv[1]))
    manager = TokenManager(settings)
    print("ready", flush=True)
    sys.stdin.readline()
    print(manager.access_token(), flush=True)
    """
)


def test_two_processes_refresh_once(tmp_path: Path) -> None:
    with OAuthTestServer(token_delay=0.4) as server:
        settings = make_settings(server, tmp_path)
        seed_store(TokenManager(settings), server, expires_in=-1)
        config = json.dumps(
            {
                "base_url": settings.base_url,
                "client_id": settings.client_id,
                "client_secret": settings.client_secret,
                "token_store": settings.token_store,
                "timeout": 10.0,
            }
        )
        children = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, config],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "ready"
            for child in children:  # release both at once
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.flush()
            outputs = [child.communicate(timeout=30) for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        tokens = [out.strip() for out, _ in outputs]
        assert [child.returncode for child in children] == [0, 0], [err for _, err in outputs]
        assert server.token_requests() == 1
        assert tokens[0] == tokens[1]
        assert ping(server, tokens[0]) == 200
        stored = TokenStore(settings.token_store or "").load(TokenManager(settings).key)
        assert stored is not None
        assert stored.access_token == tokens[0]


# -- authorization code + PKCE ------------------------------------------------------------------


def test_pkce_code_flow_end_to_end(server: OAuthTestServer, tmp_path: Path) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    redirect_uri = "http://127.0.0.1:1/callback"  # never contacted: we read the 302 ourselves
    url, state, verifier = manager.authorization_url(redirect_uri)

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{server.base_url}/oauth2/authorize"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    assert query == {
        "response_type": "code",
        "client_id": server.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "scope": "offline_access",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }

    response = httpx.get(url, follow_redirects=False)
    assert response.status_code == 302
    back = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}
    assert back["state"] == state

    tokens = manager.exchange_code(back["code"], redirect_uri, verifier)

    assert tokens.grant == "authorization_code"
    assert tokens.refresh_token
    body = server.state.bodies[-1]
    assert body["code_verifier"] == verifier
    assert body["grant_type"] == "authorization_code"
    assert body["redirect_uri"] == redirect_uri
    assert manager.access_token() == tokens.access_token
    assert server.token_requests() == 1


def test_pkce_wrong_verifier_is_rejected(server: OAuthTestServer, tmp_path: Path) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    redirect_uri = "http://127.0.0.1:1/callback"
    url, _state, verifier = manager.authorization_url(redirect_uri)
    location = httpx.get(url).headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    with pytest.raises(LoginRequiredError):
        manager.exchange_code(code, redirect_uri, verifier[::-1])
    assert manager.store.load(manager.key) is None


def test_plain_http_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    settings = ConnectionSettings(
        base_url="http://intacct.example.com/ia/api/v1",
        client_id="c",
        client_secret="s",
        username="u@C",
        token_store=str(tmp_path / "t.json"),
    )
    manager = TokenManager(settings)
    with pytest.raises(ConfigError, match="https"):
        manager.authorization_url("http://127.0.0.1:8765/callback")
    with pytest.raises(ConfigError, match="https"):
        manager.access_token()


# -- config seeding -----------------------------------------------------------------------------


def test_config_tokens_seed_an_empty_store(server: OAuthTestServer, tmp_path: Path) -> None:
    body = server.issue()
    settings = make_settings(server, tmp_path, refresh_token=body["refresh_token"])
    manager = TokenManager(settings)
    token = manager.access_token()  # no access token in config: refreshes with the seed
    assert ping(server, token) == 200
    assert server.token_requests("refresh_token") == 1
    stored = manager.store.load(manager.key)
    assert stored is not None
    assert stored.refresh_token != body["refresh_token"]  # rotated one persisted


def test_newer_store_tokens_win_over_config(server: OAuthTestServer, tmp_path: Path) -> None:
    now = time.time()
    old_config_access = server.make_jwt(kind="access", iat=now - 1000, exp=now + 3000)
    settings = make_settings(
        server, tmp_path, access_token=old_config_access, refresh_token="old-config-refresh"
    )
    manager = TokenManager(settings)
    stored = seed_store(manager, server)  # obtained_at = now - 10: newer than the config
    assert manager.access_token() == stored.access_token
    after = manager.store.load(manager.key)
    assert after is not None
    assert after.refresh_token == stored.refresh_token
    assert server.token_requests() == 0


def test_newer_config_tokens_replace_older_store_tokens(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    now = time.time()
    manager_for_seed = TokenManager(make_settings(server, tmp_path))
    stale = seed_store(manager_for_seed, server)
    stale.obtained_at = now - 5000
    manager_for_seed.store.save(manager_for_seed.key, stale)

    fresh = server.issue()
    settings = make_settings(
        server,
        tmp_path,
        access_token=fresh["access_token"],
        refresh_token=fresh["refresh_token"],
    )
    manager = TokenManager(settings)
    assert manager.access_token() == fresh["access_token"]
    stored = manager.store.load(manager.key)
    assert stored is not None
    assert stored.refresh_token == fresh["refresh_token"]
    assert stored.expires_at == jwt_claims(fresh["access_token"])["exp"]
    assert server.token_requests() == 0


def test_config_tokens_of_unknown_age_never_override_the_store(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    settings = make_settings(server, tmp_path, access_token="opaque", refresh_token="opaque-r")
    manager = TokenManager(settings)
    stored = seed_store(manager, server)
    assert manager.access_token() == stored.access_token


# -- revoke, status, factory --------------------------------------------------------------------


def test_revoke_revokes_both_tokens_and_forgets_them(
    server: OAuthTestServer, tmp_path: Path
) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    seeded = seed_store(manager, server)
    manager.revoke()
    assert set(server.state.revoked) == {seeded.access_token, seeded.refresh_token}
    assert manager.store.load(manager.key) is None
    assert manager.status()["logged_in"] is False
    assert ping(server, str(seeded.access_token)) == 401


def test_status_reports_without_token_values(server: OAuthTestServer, tmp_path: Path) -> None:
    manager = TokenManager(make_settings(server, tmp_path))
    seeded = seed_store(manager, server)
    status = manager.status()
    assert status["logged_in"] is True
    assert status["has_refresh_token"] is True
    assert status["access_token_valid"] is True
    assert 3500 < status["expires_in"] <= 3600
    assert status["grant"] == "authorization_code"
    text = json.dumps(status)
    assert str(seeded.access_token) not in text
    assert str(seeded.refresh_token) not in text


def test_for_settings_is_one_manager_per_settings(server: OAuthTestServer, tmp_path: Path) -> None:
    a = TokenManager.for_settings(make_settings(server, tmp_path))
    b = TokenManager.for_settings(make_settings(server, tmp_path))
    c = TokenManager.for_settings(make_settings(server, tmp_path, username="ws-user@ACME"))
    assert a is b
    assert a is not c


# -- no secret leaks ------------------------------------------------------------------------------


def test_secrets_never_reach_logs_errors_or_repr(
    server: OAuthTestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(server, tmp_path, username="ws-user@ACME")
    manager = TokenManager(settings)
    texts: list[str] = [repr(settings), repr(manager), repr(manager.store)]

    token = manager.access_token()  # client-credentials mint
    texts.append(repr(manager.store.load(manager.key)))
    server.expire_access_tokens()
    manager.handle_unauthorized(token)  # refresh
    server.fail_next_token_request(401, {"error": "invalid_grant"})
    server.fail_next_token_request(401, {"error": "invalid_grant"})
    with pytest.raises(LoginRequiredError) as info:
        manager.handle_unauthorized(manager.access_token())
    texts += [str(info.value), repr(info.value), json.dumps(manager.status())]
    manager.revoke()
    texts.append(caplog.text)

    assert "Obtained access token" in caplog.text  # the INFO events exist...
    secrets = [server.client_secret, *server.state.issued]
    assert len(secrets) >= 5
    for text in texts:
        assert TOKEN_MARKER not in text
        for secret in secrets:
            assert secret not in text  # ...and carry no secret


# -- the project's emulator (an extra check; the tests above need only the small server) --------


def _browser_login(manager: TokenManager, emulator_base: str) -> None:
    redirect_uri = "http://127.0.0.1:1/callback"
    url, state, verifier = manager.authorization_url(redirect_uri)
    assert url.startswith(emulator_base)
    location = httpx.get(url, follow_redirects=False).headers["Location"]
    back = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert back["state"] == state
    manager.exchange_code(back["code"], redirect_uri, verifier)


def test_against_emulator_login_refresh_and_superseded_grant(tmp_path: Path) -> None:
    # Imported here so the rest of this file never depends on the emulator package.
    from intacct_emulator.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
    from intacct_emulator.testing import EmulatorServer

    with EmulatorServer() as emulator:

        def settings(store: str) -> ConnectionSettings:
            return ConnectionSettings(
                base_url=emulator.base_url,
                client_id=DEFAULT_CLIENT_ID,
                client_secret=DEFAULT_CLIENT_SECRET,
                token_store=str(tmp_path / store),
            )

        first = TokenManager(settings("first.json"))
        _browser_login(first, emulator.base_url)
        token = first.access_token()
        customers = f"{emulator.base_url}/objects/accounts-receivable/customer"
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(customers, headers=auth).status_code == 200
        refreshed = first.handle_unauthorized(token)
        assert refreshed != token
        assert emulator.requests()["POST /oauth2/token"] == 2

        # A second login for the same user+company supersedes the first grant (REST-2102 lore).
        _browser_login(TokenManager(settings("second.json")), emulator.base_url)
        with pytest.raises(LoginRequiredError, match="intacct login"):
            first.handle_unauthorized(refreshed)
        assert emulator.requests()["POST /oauth2/token"] == 4  # no retry loop
