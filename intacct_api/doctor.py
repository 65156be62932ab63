"""`intacct doctor`: check, against the user's own company, what the connector assumes.

The connector was built from Sage's guides, public clients and a handful of recorded
responses; several behaviours are only assumed (docs/FIDELITY.md lists them). The emulator
reproduces those assumptions, so only a run against the real company can confirm them. Each
check here sends the smallest request that shows one behaviour and reports ``pass``,
``fail`` (the company behaves differently from what the connector relies on: the summary says
what and why it matters), ``not permitted`` (the user may not read that object, a permission
question rather than a fidelity one) or ``n/a`` (the company has nothing to observe it on, e.g.
no entities), with the evidence (statuses, error ids, header names; never a token).

Read-only by default: only the query and model services and a token refresh. ``write_object``
opts in to creating, updating and deleting throw-away records of that object (a sandbox is
advised): transaction header, Idempotency-Key replay and 409, DELETE without a key. Every
record created is deleted again, also when a check fails half-way.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from intacct_api.client import (
    ENTITY_HEADER,
    IDEMPOTENCY_HEADER,
    TRANSACTION_HEADER,
    ApiResponse,
    IntacctClient,
)
from intacct_api.errors import IntacctAPIError, IntacctError, ModelUnavailableError
from intacct_api.pager import KEY_FIELD, MODIFIED_FIELD

__all__ = ["CheckResult", "Doctor", "format_table"]

Status = Literal["pass", "fail", "not permitted", "n/a"]

DEFAULT_OBJECTS = ("accounts-payable/vendor", "accounts-receivable/customer")
MODEL_OBJECTS = (
    "accounts-payable/vendor",
    "accounts-receivable/customer",
    "general-ledger/account",
)
REFUSED_PROBE = ("accounts-receivable/invoice", "action")
"""A field real Intacct refused in recorded traffic (REST-1106)."""
ENTITY_OBJECT = "company-config/entity"
AUDIT_OBJECT = "company-config/audit-history"
AUDIT_TIME_FIELD = "changeSource.accessDateTime"
ALTERNATE_ENTITY_HEADER = "X-IA-API-ParamEntity"
KEY_SAMPLE = 200
_LIMIT_HEADER = re.compile(r"^x-ia-.+-limit(-remaining)?$", re.IGNORECASE)
_NOT_PERMITTED = frozenset({403})


@dataclass
class CheckResult:
    """One line of the report."""

    name: str
    status: Status
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


class _ProbeTokens:
    """A token provider that hands out one well-formed but unknown token, never refreshes.

    Used to see how the company refuses a bad token (401, or 400 REST-1206 on some tenants)
    and whether the client recognises that refusal as "refresh the token".
    """

    class RefusedError(IntacctError):
        """The client asked for a new token: it recognised the refusal."""

    TOKEN = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJkb2N0b3IiOnRydWV9.ZG9jdG9yLXByb2Jl"  # noqa: S105

    def access_token(self) -> str:
        return self.TOKEN

    def handle_unauthorized(self, token_used: str) -> str:
        raise self.RefusedError("token refused")


def _describe(error: IntacctAPIError) -> dict[str, Any]:
    return {
        "status": error.status,
        "errorId": error.error_id,
        "code": error.code,
        "message": error.message[:160],
    }


def _key_number(key: str) -> tuple[int, str]:
    return (0, key) if not key.isdigit() else (int(key), key)


class Doctor:
    """Runs the checks; ``client`` is the user's configured :class:`IntacctClient`."""

    def __init__(
        self,
        client: IntacctClient,
        *,
        objects: Sequence[str] = (),
        audit_deletes: bool = True,
        write_object: str | None = None,
        write_record: Mapping[str, Any] | None = None,
        client_factory: Callable[[Any], IntacctClient] | None = None,
    ) -> None:
        self.client = client
        self.objects = list(dict.fromkeys(objects)) or list(DEFAULT_OBJECTS)
        self.audit_deletes = audit_deletes
        self.write_object = write_object
        self.write_record = dict(write_record or {})
        self._client_factory = client_factory or (
            lambda tokens: IntacctClient(client.settings, token_manager=tokens)
        )
        self.limit_headers: set[str] = set()

    # -- plumbing --------------------------------------------------------------------------

    def _seen(self, response: ApiResponse) -> ApiResponse:
        for name in response.headers:
            if _LIMIT_HEADER.match(name):
                self.limit_headers.add(name.lower())
        return response

    def _query(self, body: Mapping[str, Any], **kwargs: Any) -> tuple[list[dict[str, Any]], dict]:
        answer = self._seen(self.client.query(dict(body), **kwargs)).json()
        rows = answer.get("ia::result") if isinstance(answer, Mapping) else None
        meta = answer.get("ia::meta") if isinstance(answer, Mapping) else None
        return (
            rows if isinstance(rows, list) else [],
            meta if isinstance(meta, dict) else {},
        )

    def run(self) -> list[CheckResult]:
        """Every check, in order; one check's failure never stops the others."""
        checks: list[Callable[[], Iterator[CheckResult]]] = [
            self.check_token,
            self.check_invalid_token_form,
            self.check_entity_header,
            self.check_query_paging,
            self.check_key_order,
            self.check_refused_field_form,
            self.check_model_service,
            self.check_read_permission,
        ]
        if self.audit_deletes:
            checks.append(self.check_audit_history)
        checks.append(self.check_rate_limit_headers)
        if self.write_object:
            checks.append(self.check_writes)
        results: list[CheckResult] = []
        for check in checks:
            name = check.__name__.removeprefix("check_")
            try:
                results.extend(check())
            except IntacctAPIError as exc:
                status: Status = "not permitted" if exc.status in _NOT_PERMITTED else "fail"
                results.append(CheckResult(name, status, str(exc), _describe(exc)))
            except IntacctError as exc:
                results.append(CheckResult(name, "fail", str(exc)))
        return results

    # -- tokens ----------------------------------------------------------------------------

    def check_token(self) -> Iterator[CheckResult]:
        """A token can be obtained, and the refresh grant renews it."""
        provider = self.client.token_provider()
        provider.access_token()
        status = getattr(provider, "status", None)
        info = status() if callable(status) else {}
        evidence = {
            "grant": info.get("grant"),
            "expires_in": info.get("expires_in"),
            "has_refresh_token": info.get("has_refresh_token"),
        }
        yield CheckResult("token grant", "pass", "an access token was obtained", evidence)
        refresh_now = getattr(provider, "refresh_now", None)
        if not callable(refresh_now) or not info.get("has_refresh_token"):
            yield CheckResult("token refresh", "n/a", "no refresh token stored", evidence)
            return
        try:
            tokens = refresh_now()
        except IntacctError as exc:
            fallback = (
                " (with client credentials the client mints a new token instead)"
                if self.client.settings.uses_client_credentials
                else ""
            )
            yield CheckResult(
                "token refresh",
                "fail",
                f"the refresh grant was refused{fallback}: {exc}",
                _describe(exc) if isinstance(exc, IntacctAPIError) else {},
            )
            return
        self._query({"object": self.objects[0], "fields": [KEY_FIELD], "size": 1})
        yield CheckResult(
            "token refresh",
            "pass",
            "the refresh grant issued a token the API accepts",
            {"expires_in": None if tokens.expires_at is None else int(tokens.expires_in() or 0)},
        )

    def check_invalid_token_form(self) -> Iterator[CheckResult]:
        """A bad token is refused as the client expects: 401, or 400 REST-1206 (refresh)."""
        probe = self._client_factory(_ProbeTokens())
        try:
            probe.query({"object": self.objects[0], "fields": [KEY_FIELD], "size": 1})
        except _ProbeTokens.RefusedError:
            yield CheckResult(
                "invalid token answer",
                "pass",
                "an unknown token is refused as the client expects (it refreshes and resends)",
            )
            return
        except IntacctAPIError as exc:
            yield CheckResult(
                "invalid token answer",
                "fail",
                "an unknown token was refused in a form the client does not read as a refused "
                f"token, so it would not refresh: {exc}",
                _describe(exc),
            )
            return
        finally:
            probe.close()
        yield CheckResult(
            "invalid token answer", "fail", "a request with an unknown token was answered 2xx"
        )

    # -- headers ---------------------------------------------------------------------------

    def check_entity_header(self) -> Iterator[CheckResult]:
        """The entity header spelling the client sends is read (an unknown entity is refused)."""
        name = "entity header"
        try:
            rows, _ = self._query(
                {"object": ENTITY_OBJECT, "fields": ["id"], "size": 2}, entity=None
            )
        except IntacctAPIError as exc:
            if exc.status in _NOT_PERMITTED:
                yield CheckResult(name, "not permitted", str(exc), _describe(exc))
                return
            raise
        entities = [str(r["id"]) for r in rows if r.get("id")]
        if not entities:
            yield CheckResult(name, "n/a", "the company has no entities: the header is unused")
            return
        bogus = f"doctor-no-such-entity-{secrets.token_hex(3)}"
        probe = {"object": ENTITY_OBJECT, "fields": [KEY_FIELD], "size": 1}
        evidence: dict[str, Any] = {"entity": entities[0]}
        self._query(probe, entity=entities[0])
        spellings: dict[str, Any] = {}
        for header in (ENTITY_HEADER, ALTERNATE_ENTITY_HEADER):
            # the client's own spelling goes through its entity argument (what the tap and
            # the target use); the other one as a plain extra header
            connector_spelling = header == ENTITY_HEADER
            try:
                self.client.request(
                    "POST",
                    "/services/core/query",
                    json=probe,
                    entity=bogus if connector_spelling else None,
                    headers=None if connector_spelling else {header: bogus},
                    operation=ENTITY_OBJECT,
                )
            except IntacctAPIError as exc:
                spellings[header] = f"read (unknown entity refused: {exc.status} {exc.error_id})"
            else:
                spellings[header] = "ignored (an unknown entity was accepted)"
        evidence["spellings"] = spellings
        if spellings[ENTITY_HEADER].startswith("read"):
            yield CheckResult(name, "pass", f"{ENTITY_HEADER} is read", evidence)
        else:
            yield CheckResult(
                name,
                "fail",
                f"{ENTITY_HEADER} (what the connector sends) is ignored: an unknown entity was "
                "accepted, so entity-level reads and writes would silently run at top level",
                evidence,
            )

    def check_rate_limit_headers(self) -> Iterator[CheckResult]:
        """Answers carry the soft-limit headers the client paces by."""
        if self.limit_headers:
            yield CheckResult(
                "rate-limit headers",
                "pass",
                "soft-limit headers seen: the client can slow down before a 429",
                {"headers": sorted(self.limit_headers)},
            )
        else:
            yield CheckResult(
                "rate-limit headers",
                "fail",
                "no X-IA-*-Limit/-Remaining header on any answer: the client cannot pace and "
                "will only react to 429s",
            )

    # -- query service ---------------------------------------------------------------------

    def _timestamped_object(self) -> str:
        registry = self.client.spec_registry()
        for name in self.objects:
            info = registry.objects.get(name)
            if info is not None and info.has_modified_timestamp:
                return name
        return DEFAULT_OBJECTS[0]

    def check_query_paging(self) -> Iterator[CheckResult]:
        """Sort by (modified, key) and ``ia::meta.next`` paging behave as the pager expects."""
        name = "query paging"
        obj = self._timestamped_object()
        body = {
            "object": obj,
            "fields": [KEY_FIELD, MODIFIED_FIELD],
            "orderBy": [{MODIFIED_FIELD: "asc"}, {KEY_FIELD: "asc"}],
            "start": 1,
            "size": 3,
        }
        first, meta = self._query(body)
        evidence: dict[str, Any] = {"object": obj, "meta": meta}
        stamps = [r.get(MODIFIED_FIELD) for r in first]
        if any(s is None for s in stamps) and stamps:
            evidence["note"] = "null timestamps present"
        ordered = all((a or "") <= (b or "") for a, b in itertools.pairwise(stamps) if a and b)
        total = meta.get("totalCount")
        if not isinstance(total, int):
            yield CheckResult(name, "fail", "ia::meta has no totalCount", evidence)
            return
        if total == 0:
            yield CheckResult(name, "n/a", f"{obj} has no records to page through", evidence)
            return
        if total > len(first):
            if meta.get("next") != len(first) + 1:
                yield CheckResult(
                    name, "fail", f"ia::meta.next is {meta.get('next')!r}, expected 4", evidence
                )
                return
            second, _ = self._query({**body, "start": meta["next"]})
            keyset, _ = self._query(
                {
                    **body,
                    "start": 1,
                    "filters": [
                        {"$gte": {MODIFIED_FIELD: first[-1][MODIFIED_FIELD]}},
                        {
                            "$notIn": {
                                KEY_FIELD: [
                                    r[KEY_FIELD]
                                    for r in first
                                    if r[MODIFIED_FIELD] == first[-1][MODIFIED_FIELD]
                                ]
                            }
                        },
                    ],
                }
            )
            evidence["page2_first"] = second[0] if second else None
            evidence["keyset_first"] = keyset[0] if keyset else None
            if second and keyset and second[0][KEY_FIELD] != keyset[0][KEY_FIELD]:
                yield CheckResult(
                    name,
                    "fail",
                    "the keyset condition (modified >= last, key not in ties) does not continue "
                    "where offset paging does",
                    evidence,
                )
                return
        elif meta.get("next") is not None:
            yield CheckResult(name, "fail", "ia::meta.next is set on the last page", evidence)
            return
        if not ordered:
            yield CheckResult(name, "fail", f"rows not sorted by {MODIFIED_FIELD}", evidence)
            return
        yield CheckResult(
            name, "pass", f"sorted by ({MODIFIED_FIELD}, key); next/keyset agree", evidence
        )

    def check_key_order(self) -> Iterator[CheckResult]:
        """``orderBy key`` and ``key > X`` agree: numeric-string keys, numeric or text order."""
        name = "key ordering"
        obj = self.objects[0]
        body: dict[str, Any] = {
            "object": obj,
            "fields": [KEY_FIELD],
            "orderBy": [{KEY_FIELD: "asc"}],
            "size": KEY_SAMPLE,
        }
        rows, _ = self._query(body)
        keys = [str(r[KEY_FIELD]) for r in rows if r.get(KEY_FIELD) is not None]
        if len(keys) < 3:
            yield CheckResult(name, "n/a", f"{obj} has fewer than 3 records", {"object": obj})
            return
        numeric = keys == sorted(keys, key=_key_number)
        text = keys == sorted(keys)
        order = (
            "numeric and text (indistinguishable on these keys)"
            if numeric and text
            else "numeric"
            if numeric
            else "text"
            if text
            else "neither"
        )
        # the boundary where the two orders differ most: the middle of the sample
        index = len(keys) // 2
        boundary = keys[index]
        after, _ = self._query({**body, "filters": [{"$gt": {KEY_FIELD: boundary}}]})
        got = [str(r[KEY_FIELD]) for r in after]
        expected = keys[index + 1 :]
        evidence = {
            "object": obj,
            "sort": order,
            "boundary": boundary,
            "after_boundary": got[:5],
            "expected": expected[:5],
        }
        if order == "neither" or got[: len(expected)] != expected[: len(got)]:
            yield CheckResult(
                name,
                "fail",
                f"orderBy key and key > {boundary!r} disagree (sort looks {order}): keyset "
                "paging on key would skip or repeat records",
                evidence,
            )
            return
        yield CheckResult(name, "pass", f"keys sort and compare the same way ({order})", evidence)

    def check_refused_field_form(self) -> Iterator[CheckResult]:
        """A field the query refuses is named where the client looks (REST-1106 placeholders)."""
        name = "REST-1106 form"
        obj, refused = REFUSED_PROBE
        try:
            self._query({"object": obj, "fields": [KEY_FIELD, refused], "size": 1})
        except IntacctAPIError as exc:
            if exc.status in _NOT_PERMITTED:
                yield CheckResult(name, "not permitted", str(exc), _describe(exc))
                return
            found = exc.refused_query_field()
            evidence = {**_describe(exc), "field_read": found}
            if found == refused:
                yield CheckResult(
                    name, "pass", f"{obj}.{refused} refused and named as expected", evidence
                )
            else:
                yield CheckResult(
                    name,
                    "fail",
                    "the refusal does not name the field where the client reads it "
                    "(REST-1106 with placeholders FIELD / FIELD_PATH): a refused field would "
                    "fail the stream instead of being dropped",
                    evidence,
                )
            return
        yield CheckResult(
            name, "n/a", f"{obj}.{refused} is queryable in this company: nothing to observe"
        )

    def check_model_service(self) -> Iterator[CheckResult]:
        """The model service describes the usual objects (fields present)."""
        for obj in MODEL_OBJECTS:
            label = f"model {obj}"
            try:
                model = self.client.model(obj)
            except ModelUnavailableError as exc:
                yield CheckResult(
                    label,
                    "fail",
                    "empty answer: the object is not available to this company (discovery "
                    "with schema_source=model leaves it out)",
                    {"http_status": exc.http_status},
                )
                continue
            except IntacctAPIError as exc:
                status: Status = "not permitted" if exc.status in _NOT_PERMITTED else "fail"
                yield CheckResult(label, status, str(exc), _describe(exc))
                continue
            fields = model.get("fields")
            if isinstance(fields, dict) and fields:
                yield CheckResult(
                    label,
                    "pass",
                    f"{len(fields)} fields",
                    {"groups": sorted(model.get("groups") or {})[:5]},
                )
            else:
                yield CheckResult(label, "fail", "the model has no fields", {})

    def check_read_permission(self) -> Iterator[CheckResult]:
        """Each configured object can be queried, and whether it can be read incrementally."""
        registry = self.client.spec_registry()
        for obj in self.objects:
            label = f"read {obj}"
            info = registry.objects.get(obj)
            timestamped = bool(info is not None and info.has_modified_timestamp)
            body: dict[str, Any] = {"object": obj, "fields": [KEY_FIELD], "size": 1}
            if timestamped:
                body["fields"].append(MODIFIED_FIELD)
                body["orderBy"] = [{MODIFIED_FIELD: "asc"}, {KEY_FIELD: "asc"}]
            try:
                _rows, meta = self._query(body)
            except IntacctAPIError as exc:
                if exc.status in _NOT_PERMITTED:
                    yield CheckResult(label, "not permitted", str(exc), _describe(exc))
                    continue
                refused = exc.refused_query_field()
                if timestamped and refused and refused.lower().endswith("modifieddatetime"):
                    self._query({"object": obj, "fields": [KEY_FIELD], "size": 1})
                    yield CheckResult(
                        label,
                        "pass",
                        f"readable; {MODIFIED_FIELD} refused, so the tap reads it in full",
                        {**_describe(exc), "incremental": False},
                    )
                    continue
                yield CheckResult(label, "fail", str(exc), _describe(exc))
                continue
            yield CheckResult(
                label,
                "pass",
                "readable" + (" incrementally" if timestamped else " (no timestamp: full reads)"),
                {"totalCount": meta.get("totalCount"), "incremental": timestamped},
            )

    def check_audit_history(self) -> Iterator[CheckResult]:
        """`deletes: audit` needs the audit trail, queryable by its access time."""
        name = "audit history"
        try:
            self._query(
                {
                    "object": AUDIT_OBJECT,
                    "fields": [KEY_FIELD, AUDIT_TIME_FIELD],
                    "orderBy": [{AUDIT_TIME_FIELD: "asc"}],
                    "size": 1,
                }
            )
        except IntacctAPIError as exc:
            status: Status = "not permitted" if exc.status in _NOT_PERMITTED else "fail"
            yield CheckResult(
                name,
                status,
                f"deletes: audit cannot work with these credentials: {exc}",
                _describe(exc),
            )
            return
        yield CheckResult(name, "pass", f"{AUDIT_OBJECT} readable by {AUDIT_TIME_FIELD}")

    # -- writes (opt-in) -------------------------------------------------------------------

    def _record(self, marker: str) -> dict[str, Any]:
        record = {"id": f"DOCTOR-{marker}", "name": f"intacct doctor {marker}"}
        record.update(self.write_record)
        if "id" in self.write_record:
            record["id"] = f"{self.write_record['id']}-{marker}"
        return record

    def _find(self, obj: str, record_id: str) -> list[str]:
        rows, _ = self._query(
            {"object": obj, "fields": [KEY_FIELD], "filters": [{"$eq": {"id": record_id}}]}
        )
        return [str(r[KEY_FIELD]) for r in rows]

    def check_writes(self) -> Iterator[CheckResult]:
        """Create/update/delete throw-away records: transaction, idempotency, 409, DELETE."""
        obj = self.write_object or ""
        path = f"/objects/{obj}"
        created: set[str] = set()
        try:
            yield from self._write_checks(obj, path, created)
        finally:
            for key in sorted(created):
                try:
                    self.client.request("DELETE", f"{path}/{key}", operation=obj)
                except IntacctAPIError as exc:
                    if exc.status != 404:
                        raise

    def _write_checks(self, obj: str, path: str, created: set[str]) -> Iterator[CheckResult]:
        marker = secrets.token_hex(4)
        # Idempotency-Key: replay and 409
        key = f"intacct-doctor-{marker}"
        record = self._record(marker)
        first = self.client.request("POST", path, json=record, idempotency_key=key, operation=obj)
        result = first.json().get("ia::result") or {}
        record_key = str(result.get("key"))
        created.add(record_key)
        evidence: dict[str, Any] = {"first": first.status}
        try:
            replay = self.client.request(
                "POST", path, json=record, idempotency_key=key, operation=obj
            )
        except IntacctAPIError as exc:
            # e.g. a duplicate-id refusal: the resend was executed, not replayed
            replay_key = None
            evidence.update(replay=exc.status, replay_error=exc.error_id)
        else:
            replay_key = str((replay.json().get("ia::result") or {}).get("key"))
            evidence.update(
                replay=replay.status,
                cached_date_header=replay.headers.get("x-ia-idempotency-cached-date"),
                key_echoed=replay.headers.get(IDEMPOTENCY_HEADER),
            )
        copies = self._find(obj, record["id"])
        created.update(copies)
        evidence.update(same_key=replay_key == record_key, records_with_id=len(copies))
        if replay_key == record_key and len(copies) == 1:
            yield CheckResult(
                "idempotency replay", "pass", "the resend was answered from the cache", evidence
            )
        else:
            yield CheckResult(
                "idempotency replay",
                "fail",
                "a resend with the same Idempotency-Key was executed again, not replayed: "
                "retried writes could duplicate records",
                evidence,
            )
        try:
            self.client.request(
                "POST",
                path,
                json={**record, "name": record["name"] + " changed"},
                idempotency_key=key,
                operation=obj,
            )
        except IntacctAPIError as exc:
            yield CheckResult(
                "idempotency 409",
                "pass" if exc.status == 409 else "fail",
                "the same key with another body is refused"
                + ("" if exc.status == 409 else f" with {exc.status}, not 409"),
                _describe(exc),
            )
        else:
            created.update(self._find(obj, record["id"]))
            yield CheckResult(
                "idempotency 409", "fail", "the same key with another body was accepted"
            )
        # PATCH
        updated = self.client.request(
            "PATCH",
            f"{path}/{record_key}",
            json={"name": record["name"] + " updated"},
            operation=obj,
        )
        yield CheckResult(
            "update", "pass", f"PATCH answered {updated.status}", {"status": updated.status}
        )
        # transaction header: an atomic batch whose second record fails must create nothing
        twin = self._record(f"{marker}-tx")
        try:
            answer = self.client.request(
                "POST", path, json=[twin, dict(twin)], transaction=True, operation=obj
            )
            status = answer.status
        except IntacctAPIError as exc:
            status = exc.status
        leftovers = self._find(obj, twin["id"])
        created.update(leftovers)
        evidence = {"status": status, "records_left": len(leftovers), "header": TRANSACTION_HEADER}
        if leftovers:
            yield CheckResult(
                "transaction header",
                "fail",
                f"{TRANSACTION_HEADER} was ignored: a batch whose second record failed left "
                "the first one created (atomic writes are not atomic)",
                evidence,
            )
        else:
            yield CheckResult(
                "transaction header", "pass", "the failed atomic batch created nothing", evidence
            )
        # DELETE without an Idempotency-Key (GET/DELETE do not support it)
        deleted = self.client.request("DELETE", f"{path}/{record_key}", operation=obj)
        try:
            self.client.request("GET", f"{path}/{record_key}", operation=obj)
        except IntacctAPIError as exc:
            gone = exc.status == 404
        else:
            gone = False
        if gone:
            created.discard(record_key)
        yield CheckResult(
            "delete",
            "pass" if deleted.status == 204 and gone else "fail",
            f"DELETE without Idempotency-Key answered {deleted.status}; record "
            + ("gone" if gone else "still there"),
            {"status": deleted.status},
        )


def results_json(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    """The ``--json`` form."""
    return [asdict(r) for r in results]


def format_table(results: Sequence[CheckResult]) -> str:
    """A plain text table: check, status, summary (evidence indented under failures)."""
    width = max((len(r.name) for r in results), default=5)
    lines = [f"{'check':<{width}}  {'status':<13}  summary", "-" * (width + 60)]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.status:<13}  {r.summary}")
        if r.status != "pass" and r.evidence:
            pairs = ", ".join(f"{k}={v}" for k, v in r.evidence.items())
            lines.append(f"{'':<{width}}  {'':<13}  evidence: {pairs}")
    counts = {
        s: sum(r.status == s for r in results) for s in ("pass", "fail", "not permitted", "n/a")
    }
    lines.append("")
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)
