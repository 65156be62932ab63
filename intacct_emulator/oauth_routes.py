"""HTTP endpoints of the OAuth server: `/oauth2/authorize`, `/oauth2/token`, `/oauth2/revoke`.

Only request decoding lives here (form-urlencoded or JSON bodies, HTTP Basic client auth);
every decision is `OAuthServer`'s. Forms are parsed with the standard library so the emulator
does not need `python-multipart`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from intacct_emulator.config import API_PREFIX
from intacct_emulator.http_errors import json_response
from intacct_emulator.oauth import OAuthError, OAuthServer

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


async def request_params(request: Request) -> dict[str, str]:
    """Body parameters from a JSON object or a urlencoded form (the content type decides)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or (not content_type and raw.lstrip().startswith(b"{")):
        try:
            data: Any = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise OAuthError(400, "invalid_request", "body is not valid JSON") from None
        if not isinstance(data, dict):
            raise OAuthError(400, "invalid_request", "JSON body must be an object")
        return {str(k): str(v) for k, v in data.items() if v is not None}
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise OAuthError(400, "invalid_request", "form body is not UTF-8") from None


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """`Authorization: Basic` client credentials (RFC 6749 §2.3.1: each part form-encoded)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(401, "invalid_client", "malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError(401, "invalid_client", "malformed Basic credentials")
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


class OAuthRoutes:
    """The three OAuth endpoints over one OAuthServer."""

    def __init__(self, server: OAuthServer) -> None:
        self.server = server

    def routes(self) -> list[Route]:
        base = API_PREFIX + "/oauth2/"
        return [
            Route(base + "authorize", self.authorize, methods=["GET", "POST"]),
            Route(base + "token", self.token, methods=["POST"]),
            Route(base + "revoke", self.revoke, methods=["POST"]),
        ]

    async def authorize(self, request: Request) -> Response:
        """Automatic consent: 302 to the redirect URI with `code` and `state`."""
        try:
            params = dict(request.query_params)
            if request.method == "POST":
                params |= await request_params(request)
            location = self.server.authorize(params)
        except OAuthError as exc:
            return json_response(exc.body(), exc.status, _NO_STORE)
        return RedirectResponse(location, status_code=302, headers=_NO_STORE)

    async def token(self, request: Request) -> Response:
        try:
            body = self.server.token(await request_params(request), basic_credentials(request))
        except OAuthError as exc:
            return json_response(exc.body(), exc.status, _NO_STORE)
        return json_response(body, 200, _NO_STORE)

    async def revoke(self, request: Request) -> Response:
        try:
            self.server.revoke(await request_params(request), basic_credentials(request))
        except OAuthError as exc:
            return json_response(exc.body(), exc.status, _NO_STORE)
        return json_response({}, 200, _NO_STORE)
