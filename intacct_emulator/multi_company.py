"""Several emulated Intacct companies behind one port: what a fleet test talks to.

Real Intacct serves every company from one host; the company a request belongs to follows
from its credentials (the OAuth client and ``user@COMPANY`` at the token endpoint, then the
bearer token). This dispatcher does the same over one ordinary single-company app per
company (``create_app``), so each company keeps its own data, OAuth clients, fault knobs
(its concurrency tier is ``max_concurrent``), stats and idempotency cache:

* ``POST /ia/api/v1/oauth2/*``: routed by ``client_id`` (body or HTTP Basic); the token
  response is read on its way out so the tokens it carries are known to belong to that
  company. An unknown client gets ``invalid_client`` without touching any company.
* every other API path: routed by the bearer token; an unknown token gets 401 ``GW-0031``.
* ``/_emulator/companies``: every company's stats plus the peak number of its API requests
  in flight at once (measured here, in front of its fault injector, so a client that sends
  more than its tier allows is seen even when the company answers those requests 429).
* ``/_emulator/companies/{name}/...``: that company's own control surface (stats, reset,
  faults...), e.g. ``POST /_emulator/companies/acme/faults``.

The companies file (``intacct-emulator serve --companies FILE``) is JSON::

    {"companies": [{"name": "acme", "client_id": "acme-client", "client_secret": "...",
                    "username": "admin@ACME", "seed_records": 80, "random_seed": 1,
                    "faults": {"max_concurrent": 4}}]}
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from intacct_emulator.app import create_app
from intacct_emulator.config import API_PREFIX, CONTROL_PREFIX, ClientConfig, EmulatorConfig
from intacct_emulator.http_errors import error_response, json_response, not_found

_OAUTH_PREFIX = API_PREFIX + "/oauth2/"
_COMPANIES = CONTROL_PREFIX + "/companies"
_MAX_KNOWN_TOKENS = 200_000
"""Token-to-company entries kept; beyond it the oldest half is forgotten (their requests then
get 401 and the client logs in again, as after any token loss)."""


@dataclass
class CompanySpec:
    """One emulated company: its name, its one OAuth client, its data size and its faults."""

    name: str
    client_id: str
    client_secret: str = field(repr=False)
    username: str
    seed_records: int = 50
    random_seed: int = 0
    faults: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> CompanySpec:
        """Read one entry of the companies file (unknown keys are refused, not ignored)."""
        known = {"name", "client_id", "client_secret", "username", "seed_records"}
        known |= {"random_seed", "faults"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"company {raw.get('name')!r}: unknown key(s) {sorted(unknown)}")
        return cls(
            name=str(raw["name"]),
            client_id=str(raw["client_id"]),
            client_secret=str(raw["client_secret"]),
            username=str(raw["username"]),
            seed_records=int(raw.get("seed_records", 50)),
            random_seed=int(raw.get("random_seed", 0)),
            faults=dict(raw.get("faults") or {}),
        )

    def config(self) -> EmulatorConfig:
        """The single-company emulator configuration this company runs on."""
        client = ClientConfig(self.client_id, self.client_secret, self.username)
        return EmulatorConfig(
            seed_records=self.seed_records,
            random_seed=self.random_seed,
            clients=[client],
            faults={"random_seed": self.random_seed, **self.faults},
        )


def load_companies(path: str | Path) -> list[CompanySpec]:
    """Parse a companies file; names and client ids must be unique (they route requests)."""
    data = json.loads(Path(path).read_text())
    specs = [CompanySpec.from_mapping(item) for item in data["companies"]]
    for attribute in ("name", "client_id"):
        values = [getattr(spec, attribute) for spec in specs]
        if len(set(values)) != len(values):
            raise ValueError(f"companies file: duplicate {attribute}")
    if not specs:
        raise ValueError("companies file: no companies")
    return specs


class _InFlight:
    """ASGI wrapper counting one company's API requests in flight, and the peak of that."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.now = 0
        self.peak = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        counted = (
            scope["type"] == "http"
            and path.startswith(API_PREFIX + "/")
            and not path.startswith(_OAUTH_PREFIX)
        )
        if not counted:
            await self.app(scope, receive, send)
            return
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await self.app(scope, receive, send)
        finally:
            self.now -= 1


class MultiCompanyApp:
    """The ASGI dispatcher; see the module docstring. ``companies[name].app`` is the inner app."""

    def __init__(self, specs: list[CompanySpec]) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.apps: dict[str, Starlette] = {spec.name: create_app(spec.config()) for spec in specs}
        self.counters = {name: _InFlight(app) for name, app in self.apps.items()}
        self.by_client = {spec.client_id: spec.name for spec in specs}
        self.by_token: dict[str, str] = {}

    def company(self, name: str) -> Any:
        """The data layer of one company (tests reach into it like ``EmulatorServer.company``)."""
        return self.apps[name].state.emulator.company

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - the emulator speaks HTTP only
            return
        path: str = scope["path"]
        if path.startswith(_COMPANIES):
            await self._control(scope, receive, send, path)
        elif path == CONTROL_PREFIX + "/health":
            body = {"status": "ok", "apiPrefix": API_PREFIX, "companies": sorted(self.apps)}
            await json_response(body)(scope, receive, send)
        elif path.startswith(_OAUTH_PREFIX):
            await self._oauth(scope, receive, send)
        elif path.startswith(API_PREFIX + "/"):
            await self._api(scope, receive, send)
        else:
            await not_found(path)(scope, receive, send)

    # ------------------------------------------------------------------ routing
    async def _oauth(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        client_id = _client_id(Headers(scope=scope), body)
        if client_id is None:  # the authorize endpoint names its client in the query string
            query = scope.get("query_string", b"").decode("latin-1")
            client_id = dict(parse_qsl(query)).get("client_id")
        name = self.by_client.get(client_id or "")
        if name is None:
            answer = {"error": "invalid_client", "error_description": "unknown client_id"}
            await json_response(answer, 401)(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def capturing_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self.counters[name](scope, _replay(body), capturing_send)
        self._remember_tokens(b"".join(chunks), name)

    def _remember_tokens(self, raw: bytes, name: str) -> None:
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            return
        if not isinstance(answer, dict):
            return
        if len(self.by_token) > _MAX_KNOWN_TOKENS:
            for old in list(self.by_token)[: _MAX_KNOWN_TOKENS // 2]:
                del self.by_token[old]
        for key in ("access_token", "refresh_token"):
            token = answer.get(key)
            if isinstance(token, str) and token:
                self.by_token[token] = name

    async def _api(self, scope: Scope, receive: Receive, send: Send) -> None:
        scheme, _, raw = (Headers(scope=scope).get("authorization") or "").partition(" ")
        name = self.by_token.get(raw.strip()) if scheme.lower() == "bearer" else None
        if name is None:
            response = error_response(
                401,
                "tokenInvalid",
                "Invalid Token",
                "GW-0031",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
            await response(scope, receive, send)
            return
        await self.counters[name](scope, receive, send)

    async def _control(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        rest = path[len(_COMPANIES) :].strip("/")
        if not rest:
            await json_response(self.summary())(scope, receive, send)
            return
        name, _, tail = rest.partition("/")
        if name not in self.apps:
            await not_found(path)(scope, receive, send)
            return
        if tail == "reset" and scope["method"] == "POST":
            self.counters[name].peak = 0
        inner = {**scope, "path": f"{CONTROL_PREFIX}/{tail}", "raw_path": None}
        await self.apps[name](inner, receive, send)

    def summary(self) -> dict[str, Any]:
        """Per company: request stats, peak requests in flight and the configured tier."""
        out: dict[str, Any] = {}
        for name, app in self.apps.items():
            state = app.state.emulator
            out[name] = {
                "stats": state.stats.snapshot(),
                "peak_in_flight": self.counters[name].peak,
                "max_concurrent": state.faults.knobs.max_concurrent,
            }
        return out

    # ------------------------------------------------------------------ lifespan
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Run every company's own lifespan (closing its database and caches at the end)."""
        async with contextlib.AsyncExitStack() as stack:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for app in self.apps.values():
                    await stack.enter_async_context(_lifespan_of(app))
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
            if message["type"] == "lifespan.shutdown":
                await stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})


@contextlib.asynccontextmanager
async def _lifespan_of(app: Starlette) -> AsyncIterator[None]:
    async with app.router.lifespan_context(app):
        yield


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    """A ``receive`` that hands the already-read body to the inner app once."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _client_id(headers: Headers, body: bytes) -> str | None:
    """The OAuth client a token/authorize/revoke request names (HTTP Basic wins, as in oauth)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            return unquote(decoded.partition(":")[0].replace("+", " "))
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        with contextlib.suppress(ValueError):
            data = json.loads(text)
            if isinstance(data, dict) and data.get("client_id") is not None:
                return str(data["client_id"])
        return None
    return dict(parse_qsl(text, keep_blank_values=True)).get("client_id")


def create_multi_company_app(specs: list[CompanySpec]) -> MultiCompanyApp:
    """Build the dispatcher (every company is created and seeded here, before serving)."""
    return MultiCompanyApp(specs)
