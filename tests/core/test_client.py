"""IntacctClient against a real loopback HTTP server: retries, auth, headers, safety."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.http_server import RecordedRequest, Reply, ScriptedServer

from intacct_api import auth
from intacct_api.client import ApiResponse, IntacctClient, encode_path_value
from intacct_api.errors import (
    ConfigError,
    IntacctAPIError,
    LoginRequiredError,
    TransportError,
    UnknownOperationError,
)
from intacct_api.retry import RetryPolicy
from intacct_api.settings import ConnectionSettings

SECRET = "PLANTED-ACCESS-TOKEN-7f3a9"
SECRET_2 = "PLANTED-REFRESHED-TOKEN-c41e"
CUSTOMER = "/objects/accounts-receivable/customer"


class FakeTokens:
    """A token provider handing out planted tokens and recording refresh requests."""

    def __init__(self, *tokens: str) -> None:
        self._tokens = list(tokens or (SECRET, SECRET_2))
        self.current = self._tokens.pop(0)
        self.unauthorized_calls: list[str] = []

    def access_token(self) -> str:
        return self.current

    def handle_unauthorized(self, token_used: str) -> str:
        self.unauthorized_calls.append(token_used)
        if self._tokens:
            self.current = self._tokens.pop(0)
        return self.current


@dataclass(frozen=True)
class StubParameter:
    name: str
    location: str
    required: bool
    schema: dict[str, Any] = field(default_factory=dict)
    description: str | None = None


@dataclass(frozen=True)
class StubOperation:
    operation_id: str
    method: str
    path: str
    object_name: str | None
    parameters: tuple[StubParameter, ...]


class StubRegistry:
    """Just enough of SpecRegistry for ``call``: operations by id."""

    def __init__(self, *operations: StubOperation) -> None:
        self._operations = {op.operation_id: op for op in operations}

    def operation(self, operation_id: str) -> StubOperation:
        if operation_id not in self._operations:
            raise UnknownOperationError(operation_id, sorted(self._operations))
        return self._operations[operation_id]


KEY = StubParameter("key", "path", True)
REGISTRY = StubRegistry(
    StubOperation(
        "get-accounts-receivable-customer",
        "GET",
        CUSTOMER + "/{key}",
        "accounts-receivable/customer",
        (KEY,),
    ),
    StubOperation(
        "delete-accounts-receivable-customer",
        "DELETE",
        CUSTOMER + "/{key}",
        "accounts-receivable/customer",
        (KEY,),
    ),
    StubOperation(
        "get-services-model",
        "GET",
        "/services/core/model",
        None,
        (
            StubParameter("name", "query", False),
            StubParameter("schema", "query", False),
        ),
    ),
    StubOperation(
        "get-report",
        "GET",
        "/services/reports/{documentName}/run",
        None,
        (
            StubParameter("documentName", "path", True),
            StubParameter("reportId", "query", True),
            StubParameter("outputType", "query", True),
            StubParameter("X-IA-Webhook-Id", "header", False),
        ),
    ),
)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(
    server: ScriptedServer,
    sleeps: list[float] | None = None,
    *,
    tokens: FakeTokens | None = None,
    max_retries: int = 3,
    **settings: Any,
) -> IntacctClient:
    config = ConnectionSettings(base_url=server.api_url, max_retries=max_retries, **settings)
    policy = RetryPolicy.from_settings(
        config, sleep=(sleeps if sleeps is not None else []).append, rand=lambda: 0.5
    )
    registry: Any = REGISTRY  # a structural stand-in for SpecRegistry
    return IntacctClient(
        config, token_manager=tokens or FakeTokens(), registry=registry, retry_policy=policy
    )


@pytest.fixture
def client(server: ScriptedServer, sleeps: list[float]) -> Iterator[IntacctClient]:
    with make_client(server, sleeps) as c:
        yield c


def ok(body: Any = None, status: int = 200) -> Reply:
    return Reply(status, {"ia::result": {"key": "1"}} if body is None else body)


# -- basic request/response -------------------------------------------------------------------


def test_get_sends_standard_headers_and_decodes_json(
    server: ScriptedServer, client: IntacctClient
) -> None:
    server.queue(ok({"ia::result": {"key": "7", "amount": "68400.00"}}))
    response = client.request("GET", CUSTOMER + "/7")
    assert isinstance(response, ApiResponse)
    assert response.status == 200
    assert response.json() == {"ia::result": {"key": "7", "amount": "68400.00"}}
    assert response.json() is response.json()
    [seen] = server.requests
    assert seen.method == "GET"
    assert seen.path == "/ia/api/v1" + CUSTOMER + "/7"
    assert seen.headers["authorization"] == f"Bearer {SECRET}"
    assert seen.headers["accept"] == "application/json"
    assert seen.headers["user-agent"].startswith("intacct-singer/")
    assert "x-ia-api-param-entity" not in seen.headers


def test_post_json_body_and_empty_204(server: ScriptedServer, client: IntacctClient) -> None:
    server.queue(ok(status=201), Reply(204))
    client.request("POST", CUSTOMER, json={"id": "C1", "creditLimit": "10.50", "n": [1, 2]})
    deleted = client.request("DELETE", CUSTOMER + "/1")
    assert deleted.status == 204
    assert deleted.json() == {}
    assert server.requests[0].json() == {"id": "C1", "creditLimit": "10.50", "n": [1, 2]}
    assert server.requests[0].headers["content-type"] == "application/json"


def test_query_helper_posts_to_query_service(server: ScriptedServer, client: IntacctClient) -> None:
    server.queue(ok({"ia::result": [], "ia::meta": {"totalCount": 0}}))
    body = {"object": "accounts-receivable/customer", "fields": ["key", "id"]}
    assert client.query(body).json()["ia::meta"] == {"totalCount": 0}
    [seen] = server.requests
    assert (seen.method, seen.path) == ("POST", "/ia/api/v1/services/core/query")
    assert seen.json() == body


def test_query_error_names_the_object(server: ScriptedServer, client: IntacctClient) -> None:
    error_body = {
        "ia::result": {
            "ia::error": {
                "code": "invalidRequest",
                "errorId": "REST-1106",
                "message": "The action field in accounts-receivable/invoice object cannot be "
                "used in query in version 1",
                "additionalInfo": {"placeholders": {"FIELD": "action"}},
            }
        },
        "ia::meta": {"totalCount": 1, "totalSuccess": 0, "totalError": 1},
    }
    server.queue(Reply(400, error_body))
    with pytest.raises(IntacctAPIError) as info:
        client.query({"object": "accounts-receivable/invoice", "fields": ["action"]})
    assert info.value.status == 400
    assert info.value.operation == "accounts-receivable/invoice"
    assert info.value.refused_query_field() == "action"
    assert str(info.value).startswith("accounts-receivable/invoice: The action field")
    assert len(server.requests) == 1  # a 400 is not retried


def test_model_helper(server: ScriptedServer, client: IntacctClient) -> None:
    server.queue(ok({"ia::result": {"fields": {"id": {"type": "string"}}}}))
    assert client.model("accounts-payable/vendor") == {"fields": {"id": {"type": "string"}}}
    [seen] = server.requests
    assert seen.path == "/ia/api/v1/services/core/model"
    assert seen.query == "name=accounts-payable%2Fvendor&schema=true"


# -- retries ---------------------------------------------------------------------------------


def test_429_with_retry_after_waits_and_logs_once(
    server: ScriptedServer,
    client: IntacctClient,
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.queue(Reply(429, b"", {"Retry-After": "12"}), ok())
    with caplog.at_level(logging.WARNING, logger="intacct_api.client"):
        assert client.query({"object": "x/y"}).status == 200
    assert sleeps == [12.0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["429 from POST /services/core/query: waiting 12.0 s (Retry-After)"]
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    "header",
    [
        "X-IA-Throttle-Limit-RetryAfter",
        "X-IA-Hour-Rate-Limit-Retry-After",
        "X-IA-TENANT-Throttle-Limit-Retry-After",
        "X-IA-Minute-Rate-Limit-Retry-After",
    ],
)
def test_429_with_each_ia_retry_header(
    server: ScriptedServer,
    client: IntacctClient,
    sleeps: list[float],
    caplog: pytest.LogCaptureFixture,
    header: str,
) -> None:
    server.queue(Reply(429, {"ia::error": {"code": "GW-0010"}}, {header: "7"}), ok())
    with caplog.at_level(logging.WARNING, logger="intacct_api.client"):
        client.request("GET", CUSTOMER + "/1")
    assert sleeps == [7.0]
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.getMessage().lower() == (
        f"429 from get {CUSTOMER}/1: waiting 7.0 s ({header})".lower()
    )


def test_503_without_header_backs_off_and_post_write_is_retried(
    server: ScriptedServer, client: IntacctClient, sleeps: list[float]
) -> None:
    # 503 means "not processed", so even a create without Idempotency-Key is safe to resend.
    server.queue(Reply(503, b"busy"), ok(status=201))
    assert client.request("POST", CUSTOMER, json={"id": "C1"}).status == 201
    assert sleeps == [0.5]  # full jitter with rand=0.5 and base 1 s
    assert [r.json() for r in server.requests] == [{"id": "C1"}, {"id": "C1"}]


def test_500_then_success(
    server: ScriptedServer, client: IntacctClient, sleeps: list[float]
) -> None:
    server.queue(Reply(500, {"ia::error": {"message": "boom"}}), Reply(502), ok())
    assert client.request("GET", CUSTOMER + "/1").json() == {"ia::result": {"key": "1"}}
    assert sleeps == [0.5, 1.0]  # exponential: rand * base * 2**n
    assert len(server.requests) == 3


def test_retries_exhausted_raises_with_status(
    server: ScriptedServer, client: IntacctClient, sleeps: list[float]
) -> None:
    throttled = Reply(
        429,
        {"ia::error": {"code": "GW-0010", "message": "Rate limit exceeded"}},
        {"X-IA-Throttle-Limit-RetryAfter": "2"},
    )
    server.queue(*[throttled] * 4)
    with pytest.raises(IntacctAPIError) as info:
        client.request("GET", CUSTOMER + "/1")
    assert info.value.status == 429
    assert info.value.code == "GW-0010"
    assert info.value.retry_after == 2.0
    assert info.value.operation == "accounts-receivable/customer"
    assert sleeps == [2.0, 2.0, 2.0]
    assert len(server.requests) == 4  # max_retries=3 -> 4 sends


def test_dropped_connection_then_success(
    server: ScriptedServer, client: IntacctClient, sleeps: list[float]
) -> None:
    server.queue(Reply(200, {"ia::result": [{"key": str(i)} for i in range(50)]}, drop=True), ok())
    assert client.request("GET", CUSTOMER + "/1").status == 200
    assert len(server.requests) == 2
    assert len(sleeps) == 1


def test_dropped_connection_on_query_is_retried(
    server: ScriptedServer, client: IntacctClient
) -> None:
    server.queue(Reply(200, {"ia::result": [{"key": "1"}] * 20}, drop=True), ok())
    assert client.query({"object": "x/y"}).status == 200
    assert len(server.requests) == 2


def test_dropped_connection_on_unkeyed_create_is_not_resent(
    server: ScriptedServer, client: IntacctClient
) -> None:
    # The create may have happened; re-sending without an Idempotency-Key could duplicate it.
    server.queue(Reply(201, {"ia::result": {"key": "1"}}, drop=True), ok())
    with pytest.raises(TransportError) as info:
        client.request("POST", CUSTOMER, json={"id": "C1"})
    assert "accounts-receivable/customer" in str(info.value)
    assert len(server.requests) == 1


def test_dropped_connection_on_keyed_create_is_resent(
    server: ScriptedServer, client: IntacctClient
) -> None:
    server.queue(Reply(201, {"ia::result": {"key": "1"}}, drop=True), ok(status=201))
    response = client.request("POST", CUSTOMER, json={"id": "C1"}, idempotency_key="k-1")
    assert response.status == 201
    assert [r.headers["idempotency-key"] for r in server.requests] == ["k-1", "k-1"]


def test_connection_refused_exhausts_into_transport_error(sleeps: list[float]) -> None:
    with ScriptedServer() as srv:
        dead_client = make_client(srv, sleeps, max_retries=2)
    with dead_client, pytest.raises(TransportError) as info:  # server is gone now
        dead_client.request("GET", CUSTOMER + "/1")
    assert "after 3 attempts" in str(info.value)
    assert len(sleeps) == 2


def test_html_502_gives_clear_error(server: ScriptedServer, sleeps: list[float]) -> None:
    html = Reply(
        502,
        b"<html><body><h1>502 Bad Gateway</h1><hr>cloudfront</body></html>",
        {"Content-Type": "text/html"},
    )
    server.queue(html, html)
    with make_client(server, sleeps, max_retries=1) as c, pytest.raises(IntacctAPIError) as info:
        c.request("GET", CUSTOMER + "/1")
    text = str(info.value)
    assert info.value.status == 502
    assert "HTTP 502 Bad Gateway" in text
    assert "text/html" in text
    assert "cloudfront" in text
    assert "<" not in text


# -- 401 handling ----------------------------------------------------------------------------


def test_401_refreshes_once_then_succeeds(server: ScriptedServer, sleeps: list[float]) -> None:
    tokens = FakeTokens()
    server.queue(Reply(401, {"ia::error": {"code": "tokenInvalid"}}), ok())
    with make_client(server, sleeps, tokens=tokens) as c:
        assert c.request("GET", CUSTOMER + "/1").status == 200
    assert tokens.unauthorized_calls == [SECRET]
    auth = [r.headers["authorization"] for r in server.requests]
    assert auth == [f"Bearer {SECRET}", f"Bearer {SECRET_2}"]
    assert sleeps == []


def test_401_twice_raises(server: ScriptedServer, sleeps: list[float]) -> None:
    tokens = FakeTokens()
    denied = Reply(401, {"ia::error": {"code": "unauthorized", "message": "Not allowed"}})
    server.queue(denied, denied, ok())
    with make_client(server, sleeps, tokens=tokens) as c, pytest.raises(IntacctAPIError) as info:
        c.request("GET", CUSTOMER + "/1")
    assert not isinstance(info.value, LoginRequiredError)
    assert info.value.status == 401
    # the fresh token was refused too: one more refresh, which brought no new token, so stop
    assert tokens.unauthorized_calls == [SECRET, SECRET_2]
    assert len(server.requests) == 2


def test_401_again_after_backoff_refreshes_again(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    """A token invalidated again while a 503 retry backs off is refreshed again (issue 11)."""
    tokens = FakeTokens(SECRET, SECRET_2, "third-token")
    unauthorized = Reply(401, {"ia::error": {"code": "tokenInvalid"}})
    server.queue(unauthorized, Reply(503, {}), unauthorized, ok())
    with make_client(server, sleeps, tokens=tokens) as c:
        assert c.request("GET", CUSTOMER + "/1").status == 200
    assert tokens.unauthorized_calls == [SECRET, SECRET_2]
    auth = [r.headers["authorization"] for r in server.requests]
    expected = [SECRET, SECRET_2, SECRET_2, "third-token"]  # 401, 503, 401, ok
    assert auth == [f"Bearer {token}" for token in expected]


def test_write_failing_after_a_lost_response_is_outcome_unknown(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    """A 500 on a keyed write may have been executed: the final error says the outcome is
    unknown, while a write refused before execution (400) is a plain failure."""
    server.queue(Reply(500, {}), Reply(409, {"ia::error": {"errorId": "REST-9999"}}))
    with make_client(server, sleeps) as c, pytest.raises(IntacctAPIError) as info:
        c.request("POST", CUSTOMER, json={"id": "C1"}, idempotency_key="k-1")
    assert info.value.outcome_unknown is True
    server.queue(Reply(400, {"ia::error": {"errorId": "REST-1064"}}))
    with make_client(server, sleeps) as c, pytest.raises(IntacctAPIError) as refused:
        c.request("POST", CUSTOMER, json={"id": "C1"}, idempotency_key="k-2")
    assert refused.value.outcome_unknown is False


def test_401_twice_with_rest_2102_is_login_required(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    gone = Reply(
        401,
        {
            "error": {
                "code": "tokenInvalid",
                "message": "Token is not valid",
                "errorId": "REST-2102",
            }
        },
    )
    server.queue(gone, gone)
    with make_client(server, sleeps) as c, pytest.raises(LoginRequiredError) as info:
        c.request("GET", CUSTOMER + "/1")
    assert "intacct login" in str(info.value)
    assert info.value.api_error is not None
    assert info.value.api_error.error_id == "REST-2102"


# -- headers ---------------------------------------------------------------------------------


def test_entity_header_default_override_and_removal(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    with make_client(server, sleeps, entity="US-EAST") as c:
        c.request("GET", CUSTOMER + "/1")
        c.request("GET", CUSTOMER + "/1", entity="UK")
        c.request("GET", CUSTOMER + "/1", entity=None)
        c.query({"object": "x/y"}, entity="DE")
    entities = [r.headers.get("x-ia-api-param-entity") for r in server.requests]
    assert entities == ["US-EAST", "UK", None, "DE"]


def test_idempotency_and_transaction_headers(server: ScriptedServer, client: IntacctClient) -> None:
    server.queue(ok(status=201), ok())
    client.request(
        "POST", CUSTOMER, json=[{"id": "A"}], idempotency_key="batch-1", transaction=True
    )
    client.request("GET", CUSTOMER + "/1")
    first, second = server.requests
    assert first.headers["idempotency-key"] == "batch-1"
    assert first.headers["x-ia-api-param-transaction"] == "true"
    assert "idempotency-key" not in second.headers
    assert "x-ia-api-param-transaction" not in second.headers


def test_caller_cannot_override_authorization(client: IntacctClient) -> None:
    with pytest.raises(ConfigError):
        client.request("GET", CUSTOMER, headers={"Authorization": "Bearer other"})


def test_idempotency_key_length_checked(client: IntacctClient) -> None:
    with pytest.raises(ConfigError):
        client.request("POST", CUSTOMER, json={}, idempotency_key="k" * 257)


# -- transport safety ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.intacct.com/ia/api/v1",
        "http://10.0.0.5:8000/ia/api/v1",
        "http://127.0.0.1.nip.io/ia/api/v1",
        "ftp://127.0.0.1/ia/api/v1",
        "https://user:pw@api.intacct.com/ia/api/v1",
    ],
)
def test_insecure_base_urls_refused(base_url: str) -> None:
    with pytest.raises(ConfigError):
        IntacctClient(ConnectionSettings(base_url=base_url), token_manager=FakeTokens())


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:1/ia/api/v1",
        "http://127.8.9.10:1/ia/api/v1",
        "http://[::1]:1/ia/api/v1",
        "http://localhost:1/ia/api/v1",
        "https://api.intacct.com/ia/api/v1/",
    ],
)
def test_secure_or_loopback_base_urls_accepted(base_url: str) -> None:
    with IntacctClient(ConnectionSettings(base_url=base_url), token_manager=FakeTokens()) as c:
        assert c.url_for("/x") == base_url.rstrip("/") + "/x"


@pytest.mark.parametrize("path", ["objects/x", "//evil.example/x", "https://evil.example/x"])
def test_paths_cannot_leave_base_url(client: IntacctClient, path: str) -> None:
    with pytest.raises(ConfigError):
        client.request("GET", path)


def test_redirect_to_other_host_is_not_followed(
    server: ScriptedServer, client: IntacctClient
) -> None:
    with ScriptedServer() as elsewhere:
        server.queue(Reply(302, b"", {"Location": elsewhere.url + "/steal"}))
        with pytest.raises(IntacctAPIError) as info:
            client.request("GET", CUSTOMER + "/1")
        assert elsewhere.requests == []
    assert info.value.status == 302
    assert "redirect" in str(info.value)
    assert SECRET not in str(info.value)
    assert len(server.requests) == 1


# -- call(): spec-driven routing and path encoding -------------------------------------------


@pytest.mark.parametrize(
    ("key", "wire"),
    [
        ("../x", "..%2Fx"),
        ("..", "%2E%2E"),
        ("a b", "a%20b"),
        ("Zürich/€", "Z%C3%BCrich%2F%E2%82%AC"),
        ("q?x=1#f", "q%3Fx%3D1%23f"),
        (42, "42"),
        (["1", "2", "3"], "1,2,3"),
        (["a b", "c/d"], "a%20b,c%2Fd"),
    ],
)
def test_path_parameters_are_encoded_on_the_wire(
    server: ScriptedServer, client: IntacctClient, key: Any, wire: str
) -> None:
    client.call("get-accounts-receivable-customer", path_params={"key": key})
    [seen] = server.requests
    assert seen.target == f"/ia/api/v1{CUSTOMER}/{wire}"


@pytest.mark.parametrize("key", ["1,2", ["3", "1,2"], "%2C,"])
def test_a_comma_inside_one_key_is_refused_before_sending(
    server: ScriptedServer, client: IntacctClient, key: Any
) -> None:
    # A server that decodes %2C before splitting keys would read "1,2" as two records.
    with pytest.raises(ConfigError, match="contains ','"):
        client.call("delete-accounts-receivable-customer", path_params={"key": key})
    assert server.requests == []


def test_server_directed_waits_do_not_escalate_the_backoff(
    server: ScriptedServer, sleeps: list[float]
) -> None:
    # Four honoured 429s, then a 502: its backoff starts from the first step again.
    throttle = Reply(429, b"", {"Retry-After": "3"})
    server.queue(throttle, throttle, throttle, throttle, Reply(502), ok())
    with make_client(server, sleeps, max_retries=6) as client:
        assert client.request("GET", CUSTOMER + "/1").status == 200
    assert sleeps == [3.0, 3.0, 3.0, 3.0, 0.5]


def test_call_routes_query_and_header_params(server: ScriptedServer, client: IntacctClient) -> None:
    client.call(
        "get-report",
        path_params={"documentName": "trial balance"},
        query={"reportId": "R1", "outputType": "csv", "X-IA-Webhook-Id": "wh-1", "extra": True},
    )
    [seen] = server.requests
    assert seen.path == "/ia/api/v1/services/reports/trial%20balance/run"
    assert seen.query == "reportId=R1&outputType=csv&extra=true"
    assert seen.headers["x-ia-webhook-id"] == "wh-1"


def test_call_reports_all_missing_required_params(client: IntacctClient) -> None:
    with pytest.raises(ConfigError) as info:
        client.call("get-report", query={"reportId": "R1"})
    assert str(info.value) == "get-report: missing required parameter(s): documentName, outputType"


def test_call_unknown_operation_suggests(client: IntacctClient) -> None:
    with pytest.raises(UnknownOperationError):
        client.call("get-acounts-receivable-customer")


def test_call_delete_error_names_object(server: ScriptedServer, client: IntacctClient) -> None:
    server.queue(Reply(404, {"ia::error": {"code": "notFound", "message": "No such record"}}))
    with pytest.raises(IntacctAPIError) as info:
        client.call("delete-accounts-receivable-customer", path_params={"key": ["1", "2"]})
    assert str(info.value) == "accounts-receivable/customer: No such record (notFound)"
    assert server.requests[0].method == "DELETE"
    assert server.requests[0].path.endswith("/customer/1,2")


def test_empty_path_value_refused() -> None:
    with pytest.raises(ConfigError):
        encode_path_value("")


# -- concurrency and sharing -----------------------------------------------------------------


def test_concurrency_bound_is_shared_by_clients_of_one_base_url(sleeps: list[float]) -> None:
    with ScriptedServer(default=Reply(200, {"ia::result": []}, delay=0.03)) as srv:
        first = make_client(srv, sleeps, max_concurrency=2)
        second = make_client(srv, sleeps, max_concurrency=2)
        errors: list[BaseException] = []

        def work(c: IntacctClient) -> None:
            try:
                for _ in range(3):
                    c.request("GET", CUSTOMER + "/1")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(c,)) for c in [first, second] * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        first.close()
        second.close()
    assert errors == []
    assert len(srv.requests) == 24
    assert srv.max_in_flight == 2


def test_shared_client_is_cached_per_settings() -> None:
    settings = ConnectionSettings(base_url="http://127.0.0.1:1/ia/api/v1", client_id="a")
    same = ConnectionSettings(base_url="http://127.0.0.1:1/ia/api/v1", client_id="a")
    other = ConnectionSettings(base_url="http://127.0.0.1:1/ia/api/v1", client_id="b")
    one = IntacctClient.shared(settings)
    try:
        assert IntacctClient.shared(same) is one
        two = IntacctClient.shared(other)
        assert two is not one
        two.close()
    finally:
        one.close()
    fresh = IntacctClient.shared(settings)
    assert fresh is not one
    fresh.close()


def test_closed_client_refuses_requests(server: ScriptedServer, sleeps: list[float]) -> None:
    c = make_client(server, sleeps)
    c.close()
    with pytest.raises(ConfigError):
        c.request("GET", CUSTOMER)


# -- secrets ---------------------------------------------------------------------------------


def test_secrets_never_in_debug_logs_or_exceptions(
    server: ScriptedServer, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    def echo_auth(request: RecordedRequest) -> Reply:
        # A hostile/misconfigured server echoing the credentials back in its error.
        return Reply(400, {"ia::error": {"message": f"bad {request.headers['authorization']}"}})

    server.queue(
        Reply(401, {"ia::error": {"code": "tokenInvalid"}}),
        Reply(429, b"", {"Retry-After": "0"}),
        ok(),
        echo_auth,
        Reply(401, b""),
        Reply(401, b""),
    )
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG), make_client(server, sleeps) as c:
        c.request("GET", CUSTOMER + "/1", params={"fields": "id"})
        for _ in range(2):
            with pytest.raises(IntacctAPIError) as info:
                c.request("POST", CUSTOMER, json={"id": "x"}, idempotency_key="k")
            texts += [str(info.value), repr(info.value)]
        texts.append(repr(c))
    logged = "\n".join(f"{r.name} {r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "GET /objects/accounts-receivable/customer/1 -> 200" in logged
    for secret in (SECRET, SECRET_2):
        assert secret not in logged
        for text in texts:
            assert secret not in text
    assert "[redacted]" in texts[0]


def test_5xx_on_unkeyed_create_is_not_resent(
    server: ScriptedServer, client: IntacctClient, sleeps: list[float]
) -> None:
    server.queue(Reply(502, b"upstream reset"), ok(status=201))
    with pytest.raises(IntacctAPIError) as info:
        client.request("POST", CUSTOMER, json={"id": "C1"})
    assert info.value.status == 502
    assert len(server.requests) == 1
    assert sleeps == []


def test_token_manager_built_lazily_from_settings(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[ConnectionSettings] = []

    def fake_for_settings(settings: ConnectionSettings) -> FakeTokens:
        built.append(settings)
        return FakeTokens()

    monkeypatch.setattr(auth.TokenManager, "for_settings", fake_for_settings)
    settings = ConnectionSettings(base_url=server.api_url)
    with IntacctClient(settings) as c:
        assert built == []  # nothing happens until the first request
        c.request("GET", CUSTOMER + "/1")
        c.request("GET", CUSTOMER + "/2")
    assert built == [settings]
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
