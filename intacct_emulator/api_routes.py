"""HTTP -> data layer mapping for `/objects/...` and `/services/core/{query,model}`.

Each handler turns a request into one `Company` call and the result into bytes; everything about
data (validation, paging, entities, batches) is the company's job. What stays here is what
Intacct's HTTP surface decides: entity and transaction headers, payload parsing, the 500-record
batch limit, comma-separated keys and `Idempotency-Key` replay.

Company calls run on the event-loop thread: SQLite work is CPU-bound under the GIL anyway, a
thread hop would only add latency, and requests to the company stay strictly ordered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from intacct_emulator.config import API_PREFIX
from intacct_emulator.envelopes import MAX_BATCH, EmulatorError, payload_errors, too_many
from intacct_emulator.gateway import PRINCIPAL_SCOPE_KEY
from intacct_emulator.http_errors import (
    JSON,
    error_response,
    invalid_request,
    json_response,
    not_found,
)
from intacct_emulator.idempotency import (
    MAX_KEY_LENGTH,
    Expired,
    IdempotencyCache,
    InFlight,
    fingerprint,
)
from intacct_emulator.oauth import Principal
from intacct_emulator.query_engine import paused_gc
from intacct_emulator.state import EmulatorState

_ENTITY_HEADERS = ("x-ia-api-param-entity", "x-ia-api-paramentity")
_decoder = msgspec.json.Decoder()
_log = logging.getLogger("intacct_emulator")


def _keys_from_raw_path(request: Request) -> list[str]:
    """The comma-separated keys of the last path segment, split BEFORE percent-decoding.

    Starlette's path parameters are already decoded, so an encoded comma inside one key
    (``1%2C2``) would otherwise read as two keys and touch records the caller never named.
    """
    raw = request.scope.get("raw_path") or request.url.path.encode()
    segment = raw.decode("latin-1").split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    # Not stripped: "1 " is not key 1 (the company answers 404 for it, as Intacct does).
    return [unquote(k) for k in segment.split(",") if unquote(k).strip()]


class _BadRequestError(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__("bad request")
        self.response = response


def entity_of(request: Request, names: Sequence[str] = _ENTITY_HEADERS) -> str | None:
    """Entity from the header spellings read (`names`), else the token's own entity.

    An empty header value explicitly means top level. A spelling not in `names` is ignored,
    as an unknown header is (the `entity_headers` fault switch narrows the list).
    """
    headers = request.headers
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value.strip() or None
    principal: Principal | None = request.scope.get(PRINCIPAL_SCOPE_KEY)
    return principal.entity if principal else None


def transaction_of(
    request: Request, names: Sequence[str] = ("x-ia-api-param-transaction",)
) -> bool:
    """Atomic batch requested with one of the spellings read (`transaction_headers` switch)."""
    return any(request.headers.get(n, "").strip().lower() == "true" for n in names)


def _run(call: Callable[[], Any]) -> Response:
    """Call the company; its EmulatorError already is the envelope to send."""
    try:
        result = call()
    except EmulatorError as exc:
        return json_response(exc.body, exc.status)
    except Exception:
        _log.exception("unexpected error in the emulator's data layer")
        return error_response(500, "internalServerError", "An internal error occurred", "REST-1000")
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        status, body = result
        if body is None:
            return Response(status_code=status)
        return json_response(body, status)
    return json_response(result)


class ApiRoutes:
    """Handlers bound to one emulator's state."""

    def __init__(self, state: EmulatorState) -> None:
        self.company = state.company
        self.idempotency: IdempotencyCache = state.idempotency
        self.faults = state.faults

    def routes(self) -> list[Route]:
        prefix = API_PREFIX
        return [
            Route(prefix + "/services/core/query", self.query, methods=["POST"]),
            Route(prefix + "/services/core/model", self.model, methods=["GET"]),
            Route(
                prefix + "/objects/{application}/{object}",
                self.collection,
                methods=["GET", "POST", "PATCH"],
            ),
            Route(
                prefix + "/objects/{application}/{object}/{keys}",
                self.member,
                methods=["GET", "PATCH", "DELETE"],
            ),
        ]

    # ------------------------------------------------------------------ services
    async def query(self, request: Request) -> Response:
        try:
            body = _require_object(await self._payload(request))
            entity = self._entity(request)
        except _BadRequestError as bad:
            return bad.response
        refused = self.faults.forbidden(str(body.get("object") or ""))
        if refused is not None:
            return refused
        with paused_gc():
            return _run(
                lambda: Response(self.company.query_json(body, entity=entity), media_type=JSON)
            )

    async def model(self, request: Request) -> Response:
        params = dict(request.query_params)
        name = params.get("name")
        refused = self.faults.forbidden(name)
        if refused is not None:
            return refused
        if name and name.split("::", 1)[0] in self.faults.knobs.tenant_lacks_objects:
            # What Intacct answers for an object the tenant lacks (amp-labs connectors'
            # handler and fixture): 200 and an empty result, not an error status.
            return json_response({"ia::result": []})
        return _run(lambda: self.company.model(params))

    # ------------------------------------------------------------------ objects
    async def collection(self, request: Request) -> Response:
        name = _object_name(request)
        try:
            entity = self._entity(request)
        except _BadRequestError as bad:
            return bad.response
        refused = self.faults.forbidden(name)
        if refused is not None:
            return refused
        if request.method == "GET":
            try:
                start = int(request.query_params.get("start", "1"))
                size = int(request.query_params.get("size", "100"))
            except ValueError:
                return invalid_request("start and size must be integers", "REST-1064")
            return _run(lambda: self.company.list(name, entity=entity, start=start, size=size))
        raw = await request.body()
        try:
            body = _batch_limit(self._decode(raw, request.method))
        except _BadRequestError as bad:
            return bad.response
        too_large = self.faults.too_large(len(body) if isinstance(body, list) else 1)
        if too_large is not None:
            return too_large
        transaction = transaction_of(request, self.faults.transaction_header_names())
        if request.method == "POST":

            def create() -> Response:
                return _run(
                    lambda: self.company.create(name, body, entity=entity, transaction=transaction)
                )

            return self._idempotent(request, raw, entity, transaction, create)

        def update() -> Response:
            return _run(
                lambda: self.company.update(
                    name, None, body, entity=entity, transaction=transaction
                )
            )

        return self._idempotent(request, raw, entity, transaction, update)

    async def member(self, request: Request) -> Response:
        name = _object_name(request)
        keys = _keys_from_raw_path(request)
        if not keys:
            return not_found(request.url.path)
        if len(keys) > MAX_BATCH:
            return _too_many(len(keys))
        try:
            entity = self._entity(request)
        except _BadRequestError as bad:
            return bad.response
        refused = self.faults.forbidden(name)
        if refused is not None:
            return refused
        transaction = transaction_of(request, self.faults.transaction_header_names())
        if request.method == "GET":
            return _run(lambda: self.company.get(name, keys, entity=entity))
        if request.method == "DELETE":
            return _run(
                lambda: self.company.delete(name, keys, entity=entity, transaction=transaction)
            )
        if len(keys) > 1:
            return invalid_request(
                "PATCH takes one key in the path; send an array with keys to the collection URL",
                "REST-1064",
            )
        raw = await request.body()
        try:
            body = self._decode(raw, "PATCH")
        except _BadRequestError as bad:
            return bad.response
        key = keys[0]

        def update() -> Response:
            return _run(
                lambda: self.company.update(name, key, body, entity=entity, transaction=transaction)
            )

        return self._idempotent(request, raw, entity, transaction, update)

    # ------------------------------------------------------------------ helpers
    def _entity(self, request: Request) -> str | None:
        """The request's entity; an entity the company does not have is refused (400).

        Only a multi-entity company (one with `company-config/entity` records) checks: that is
        what makes a misspelt entity header observable, since an ignored header would let the
        same request through at top level (`intacct doctor` relies on the difference).
        """
        entity = entity_of(request, self.faults.entity_header_names())
        if entity is not None and not self.company.has_entity(entity):
            raise _BadRequestError(
                invalid_request(
                    f"The entity {entity} is not a valid entity of this company",
                    "REST-1010",
                    ENTITY=entity,
                )
            )
        return entity

    async def _payload(self, request: Request) -> Any:
        return self._decode(await request.body(), request.method)

    @staticmethod
    def _decode(raw: bytes, method: str) -> Any:
        if not raw.strip():
            raise _BadRequestError(
                error_response(
                    400,
                    "invalidRequest",
                    f"A {method} request requires a payload",
                    "REST-1028",
                    message_id="IA.REQUEST_REQUIRES_A_PAYLOAD",
                    placeholders={"OPERATION": method},
                )
            )
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            error = payload_errors(
                [
                    {
                        "code": "invalidRequest",
                        "message": "The request body is not valid JSON",
                        "errorId": "REST-1064",
                        "target": "/",
                    }
                ]
            )
            raise _BadRequestError(json_response(error.body, error.status)) from None

    def _idempotent(
        self,
        request: Request,
        raw: bytes,
        entity: str | None,
        transaction: bool,
        run: Callable[[], Response],
    ) -> Response:
        """Replay, refuse (409) or run-and-remember, per `Idempotency-Key`."""
        key = request.headers.get("idempotency-key")
        if key is None or not self.faults.knobs.idempotency_keys:
            return run()
        if not key or len(key) > MAX_KEY_LENGTH:
            return invalid_request(
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", "REST-1064"
            )
        principal: Principal | None = request.scope.get(PRINCIPAL_SCOPE_KEY)
        client = principal.client_id if principal else ""
        fp = fingerprint(request.method, request.url.path, entity, transaction, raw)
        entry = self.idempotency.begin(client, key, fp)
        if isinstance(entry, InFlight):
            return _idempotency_conflict(key, "is still being processed")
        if isinstance(entry, Expired):
            if entry.stored.fingerprint != fp:
                return _idempotency_conflict(key, "was already used with a different request")
            return _idempotency_conflict(
                key, "was used more than 48 hours ago; its result is no longer available"
            )
        if entry is not None:
            if entry.fingerprint != fp:
                return _idempotency_conflict(key, "was already used with a different request")
            return Response(
                entry.body,
                status_code=entry.status,
                media_type=entry.content_type,
                headers={"Idempotency-Key": key, "x-ia-idempotency-cached-date": entry.cached_date},
            )
        try:
            response = run()
        except BaseException:
            self.idempotency.abandon(client, key)
            raise
        content_type = response.media_type or "application/json"
        self.idempotency.finish(
            client,
            key,
            fp=fp,
            status=response.status_code,
            body=bytes(response.body),
            content_type=content_type,
        )
        response.headers["Idempotency-Key"] = key
        return response


def _object_name(request: Request) -> str:
    """`application/object`; unknown names get the company's 404 (one source of truth)."""
    return f"{request.path_params['application']}/{request.path_params['object']}"


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _BadRequestError(
            invalid_request("The request body must be a JSON object", "REST-1064")
        )
    return body


def _batch_limit(body: Any) -> Any:
    if isinstance(body, list) and len(body) > MAX_BATCH:
        raise _BadRequestError(_too_many(len(body)))
    if not isinstance(body, dict | list):
        raise _BadRequestError(
            invalid_request("The request body must be a JSON object or array", "REST-1064")
        )
    return body


def _too_many(count: int) -> Response:
    """Intacct's answer to a batch over 500 records, built by the data layer (one errorId)."""
    error = too_many(count)
    return json_response(error.body, error.status)


def _idempotency_conflict(key: str, reason: str) -> Response:
    return error_response(
        409,
        "conflict",
        f"The Idempotency-Key {reason}",
        "REST-1409",
        headers={"Idempotency-Key": key},
        message_id="IA.IDEMPOTENCY_KEY_CONFLICT",
    )
