"""The emulator's OAuth server over real HTTP: grants, PKCE, rotation, REST-2102, revoke, 401s."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from intacct_emulator.config import ClientConfig, default_clients
from intacct_emulator.oauth import pkce_challenge
from intacct_emulator.testing import EmulatorServer

REDIRECT = "https://app.example/callback"
QUERY = {"object": "accounts-payable/vendor", "fields": ["key"]}
PUBLIC_APP = ClientConfig("public-app", "public-secret", "jane@DEMO")


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorServer]:
    clients = [*default_clients(), PUBLIC_APP]
    with EmulatorServer(clients=clients) as server:
        yield server


@pytest.fixture
def http(emu: EmulatorServer) -> Iterator[httpx.Client]:
    emu.reset()
    with httpx.Client(base_url=emu.base_url, timeout=10) as client:
        yield client


def _cc_form(**extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "username": "admin@DEMO",
        **extra,
    }


def _query(http: httpx.Client, access_token: str) -> httpx.Response:
    return http.post(
        "/services/core/query", json=QUERY, headers={"Authorization": f"Bearer {access_token}"}
    )


def _token_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 401
    body = response.json()
    error = body["ia::result"]["ia::error"]
    assert error["code"] == "tokenInvalid"
    assert body["ia::meta"]["totalError"] == 1
    return error


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _authorize(
    http: httpx.Client, client_id: str, *, scope: str = "offline_access", **extra: str
) -> str:
    state = secrets.token_urlsafe(8)
    response = http.get(
        "/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "state": state,
            "scope": scope,
            **extra,
        },
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    params = parse_qs(location.query)
    assert params["state"] == [state]
    return params["code"][0]


def _login(
    http: httpx.Client, client_id: str = "demo-client", secret: str = "demo-secret"
) -> dict[str, Any]:
    code = _authorize(http, client_id)
    response = http.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "client_secret": secret,
        },
    )
    assert response.status_code == 200
    return response.json()


def test_client_credentials_form_body(http: httpx.Client) -> None:
    response = http.post("/oauth2/token", data=_cc_form())
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 43200
    assert body["refresh_token"]
    claims = _claims(body["access_token"])
    assert claims["sub"] == "admin@DEMO"
    assert claims["exp"] - claims["iat"] == 43200
    assert _query(http, body["access_token"]).status_code == 200


def test_client_credentials_json_body_and_basic_auth(http: httpx.Client) -> None:
    as_json = http.post("/oauth2/token", json=_cc_form())
    assert as_json.status_code == 200
    basic = http.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials", "username": "admin@DEMO|E1"},
        auth=("demo-client", "demo-secret"),
    )
    assert basic.status_code == 200
    assert _claims(basic.json()["access_token"])["entity"] == "E1"


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "nobody"}, 401, "invalid_client"),
        ({"username": "someone-else@DEMO"}, 401, "invalid_grant"),
        ({"username": "no-company"}, 400, "invalid_request"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
def test_token_endpoint_errors_are_oauth_shaped(
    http: httpx.Client, form: dict[str, str], status: int, error: str
) -> None:
    response = http.post("/oauth2/token", data=_cc_form(**form))
    assert response.status_code == status
    assert response.json()["error"] == error


@pytest.mark.parametrize("method", ["S256", "plain"])
def test_authorization_code_with_pkce(http: httpx.Client, method: str) -> None:
    verifier = secrets.token_urlsafe(48)
    code = _authorize(
        http,
        "public-app",
        code_challenge=pkce_challenge(verifier, method),
        code_challenge_method=method,
    )
    wrong = http.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": "public-app",
            "code_verifier": "not-the-verifier",
        },
    )
    assert wrong.json()["error"] == "invalid_grant"

    code = _authorize(
        http,
        "public-app",
        code_challenge=pkce_challenge(verifier, method),
        code_challenge_method=method,
    )
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "public-app",
        "code_verifier": verifier,
    }
    ok = http.post("/oauth2/token", data=form)
    assert ok.status_code == 200
    assert _claims(ok.json()["access_token"])["sub"] == "jane@DEMO"
    assert _query(http, ok.json()["access_token"]).status_code == 200
    # Codes are single-use.
    assert http.post("/oauth2/token", data=form).json()["error"] == "invalid_grant"


def test_refresh_token_only_with_offline_access(http: httpx.Client) -> None:
    code = _authorize(http, "demo-client", scope="")
    body = http.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
    ).json()
    assert "refresh_token" not in body
    assert _login(http)["refresh_token"]


def test_refresh_rotates_and_a_rotated_token_is_dead(http: httpx.Client) -> None:
    first = _login(http)
    refresh_form = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": "demo-client",
        "client_secret": "demo-secret",
    }
    second = http.post("/oauth2/token", data=refresh_form)
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert rotated["expires_in"] == 43200
    assert _query(http, rotated["access_token"]).status_code == 200

    reuse = http.post("/oauth2/token", data=refresh_form)
    assert reuse.status_code == 401
    assert reuse.json()["error"] == "invalid_grant"

    third = http.post(
        "/oauth2/token", json={**refresh_form, "refresh_token": rotated["refresh_token"]}
    )
    assert third.status_code == 200


def test_second_authorization_kills_the_first_with_rest_2102(http: httpx.Client) -> None:
    old = _login(http)
    assert _query(http, old["access_token"]).status_code == 200
    new = _login(http)  # same user + company authorizes again

    error = _token_error(_query(http, old["access_token"]))
    assert error["errorId"] == "REST-2102"
    refresh = http.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": old["refresh_token"],
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
    )
    assert refresh.status_code == 401
    assert refresh.json()["error"] == "invalid_grant"
    assert _query(http, new["access_token"]).status_code == 200
    # Client-credentials tokens are not connections: they are not superseded.
    cc = http.post("/oauth2/token", data=_cc_form()).json()
    _login(http)
    assert _query(http, cc["access_token"]).status_code == 200


def test_revoke_access_and_refresh_tokens(http: httpx.Client) -> None:
    tokens = http.post("/oauth2/token", data=_cc_form()).json()
    other = http.post("/oauth2/token", data=_cc_form()).json()
    creds = {"client_id": "demo-client", "client_secret": "demo-secret"}
    assert http.post("/oauth2/revoke", data={**creds, "token": "never-issued"}).status_code == 200
    bad_client = http.post("/oauth2/revoke", data={"client_id": "demo-client", "token": "x"})
    assert bad_client.status_code == 401

    assert (
        http.post("/oauth2/revoke", data={**creds, "token": tokens["access_token"]}).status_code
        == 200
    )
    assert _token_error(_query(http, tokens["access_token"]))["errorId"] == "REST-1206"
    # Tokens are pooled per user and company: the other login's tokens went with it.
    assert _token_error(_query(http, other["access_token"]))["errorId"] == "REST-1206"
    refresh = http.post(
        "/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": other["refresh_token"], **creds},
    )
    assert refresh.json()["error"] == "invalid_grant"


def test_missing_malformed_and_unknown_tokens(http: httpx.Client) -> None:
    # Sage's gateway table: GW-0034 "Invalid Authorization Header" (not Bearer), GW-0031
    # "Invalid Token" (not a decodable JWT); a well-formed token it does not know: REST-1206.
    missing = http.post("/services/core/query", json=QUERY)
    assert _token_error(missing)["errorId"] == "GW-0034"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    basic = http.post("/services/core/query", json=QUERY, auth=("demo-client", "demo-secret"))
    assert _token_error(basic)["errorId"] == "GW-0034"
    assert _token_error(_query(http, "a.b.c"))["errorId"] == "GW-0031"
    refresh_as_bearer = http.post("/oauth2/token", data=_cc_form()).json()["refresh_token"]
    assert _token_error(_query(http, refresh_as_bearer))["errorId"] == "REST-1206"


def test_expired_token_gets_the_401_shape() -> None:
    with EmulatorServer(token_lifetime=0.3) as short:
        token = short.token()
        assert token["expires_in"] == 0
        with httpx.Client(base_url=short.base_url, timeout=10) as http:
            assert _query(http, token["access_token"]).status_code == 200
            time.sleep(0.35)
            error = _token_error(_query(http, token["access_token"]))
            assert error["errorId"] == "REST-1206"
            assert error["message"]


def test_expire_tokens_now_is_one_shot(emu: EmulatorServer, http: httpx.Client) -> None:
    before = http.post("/oauth2/token", data=_cc_form()).json()
    knobs = emu.set_faults(expire_tokens_now=True)
    assert knobs["expire_tokens_now"] is False
    assert _token_error(_query(http, before["access_token"]))["errorId"] == "REST-1206"
    after = http.post("/oauth2/token", data=_cc_form()).json()
    assert _query(http, after["access_token"]).status_code == 200
    # The refresh token still works: only access tokens expired.
    refreshed = http.post(
        "/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": before["refresh_token"],
            "client_id": "demo-client",
            "client_secret": "demo-secret",
        },
    )
    assert refreshed.status_code == 200


def test_authorize_rejects_unknown_client_without_redirect(http: httpx.Client) -> None:
    response = http.get(
        "/oauth2/authorize",
        params={"response_type": "code", "client_id": "nobody", "redirect_uri": REDIRECT},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "location" not in response.headers


def test_token_responses_never_cached_and_never_logged(
    emu: EmulatorServer, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    response = http.post("/oauth2/token", data=_cc_form())
    assert response.headers["cache-control"] == "no-store"
    token = response.json()["access_token"]
    assert all(token not in record.getMessage() for record in caplog.records)
    assert emu.stats()["requests"] == {"POST /oauth2/token": 1}
