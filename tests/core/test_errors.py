"""Error envelope parsing: all three Intacct shapes, OAuth errors and non-JSON bodies."""

from __future__ import annotations

import json

import pytest

from intacct_api.errors import (
    ConfigError,
    IntacctAPIError,
    IntacctError,
    LoginRequiredError,
    UnknownObjectError,
    UnknownOperationError,
    extract_error,
    parse_error_response,
    scrub,
)

REST_1106_ERROR = {
    "code": "invalidRequest",
    "message": (
        "The action field in accounts-receivable/invoice object cannot be used in query in "
        "version 1"
    ),
    "errorId": "REST-1106",
    "additionalInfo": {
        "messageId": "IA.FIELD_CANNOT_BE_USED_IN_QUERY",
        "placeholders": {"FIELD": "action", "OBJECT": "accounts-receivable/invoice"},
        "propertySet": {},
    },
    "supportId": "Kx8pZ4%7EYzA1bC2dE3fG4hI5jK6",
}
META_ONE_ERROR = {"totalCount": 1, "totalSuccess": 0, "totalError": 1}


def _body(payload: object) -> bytes:
    return json.dumps(payload).encode()


def test_shape_1_result_wrapped_error_reads_well() -> None:
    body = _body({"ia::result": {"ia::error": REST_1106_ERROR}, "ia::meta": META_ONE_ERROR})
    error = parse_error_response(
        400, body, operation="accounts-receivable/invoice", content_type="application/json"
    )
    assert error.status == 400
    assert error.code == "invalidRequest"
    assert error.error_id == "REST-1106"
    assert error.support_id == REST_1106_ERROR["supportId"]
    assert error.placeholders == {"FIELD": "action", "OBJECT": "accounts-receivable/invoice"}
    assert error.operation == "accounts-receivable/invoice"
    assert str(error) == (
        "accounts-receivable/invoice: The action field in accounts-receivable/invoice object "
        "cannot be used in query in version 1 (REST-1106) "
        f"[supportId {REST_1106_ERROR['supportId']}]"
    )
    assert error.refused_query_field() == "action"
    assert not error.is_login_required()


def test_shape_2_top_level_error_with_details() -> None:
    payload = {
        "ia::error": {
            "code": "operationFailed",
            "message": "Creating the invoice failed",
            "errorId": "REST-1028",
            "details": [
                {
                    "code": "invalidRequest",
                    "message": "Date 2024-02-30 is not a valid date",
                    "errorId": "BL01001973",
                    "target": "/newDate",
                }
            ],
        },
        "ia::meta": META_ONE_ERROR,
    }
    error = parse_error_response(
        422, _body(payload), operation="accounts-receivable/invoice", content_type=None
    )
    assert error.status == 422
    assert error.error_id == "REST-1028"
    assert error.details[0]["target"] == "/newDate"
    text = str(error)
    assert text.startswith("accounts-receivable/invoice: Creating the invoice failed")
    assert "Date 2024-02-30 is not a valid date" in text
    assert text.endswith("(REST-1028)")
    assert "supportId" not in text


def test_shape_3_error_object_rest_2102_is_login_required() -> None:
    payload = {
        "error": {"code": "tokenInvalid", "message": "Token is not valid", "errorId": "REST-2102"}
    }
    error = parse_error_response(401, _body(payload), operation=None, content_type=None)
    assert error.error_id == "REST-2102"
    assert error.code == "tokenInvalid"
    assert error.is_login_required()
    assert str(error) == "HTTP 401 Unauthorized: Token is not valid (REST-2102)"


def test_oauth_shape() -> None:
    payload = {"error": "invalid_grant", "error_description": "Refresh token has expired"}
    error = parse_error_response(
        401, _body(payload), operation="oauth2/token", content_type="application/json"
    )
    assert error.code == "invalid_grant"
    assert error.message == "Refresh token has expired"
    assert error.is_login_required()
    assert str(error) == "oauth2/token: Refresh token has expired (invalid_grant)"


def test_oauth_shape_without_description() -> None:
    error = parse_error_response(
        400, _body({"error": "invalid_client"}), operation=None, content_type=None
    )
    assert error.code == "invalid_client"
    assert error.message == "invalid_client"
    assert not error.is_login_required()


def test_html_body_from_proxy_is_clear_and_short() -> None:
    html = (
        b"<html><head><title>502 Bad Gateway</title><style>body{color:red}</style></head>"
        b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx/1.25.3</center>"
        + b"<p>padding</p>" * 200
        + b"</body></html>"
    )
    error = parse_error_response(
        502, html, operation="core/query", content_type="text/html; charset=utf-8"
    )
    text = str(error)
    assert error.status == 502
    assert text.startswith("core/query: HTTP 502 Bad Gateway with a non-JSON text/html body")
    assert "nginx/1.25.3" in text
    assert "<" not in text
    assert "color:red" not in text
    assert len(text) < 300


def test_invalid_utf8_body_does_not_raise() -> None:
    error = parse_error_response(500, b"\xff\xfe\x00garbage", operation=None, content_type=None)
    assert str(error).startswith("HTTP 500 Internal Server Error with a non-JSON")


@pytest.mark.parametrize("body", [b"", b"   \n"])
def test_empty_body(body: bytes) -> None:
    error = parse_error_response(503, body, operation="x/y", content_type=None)
    assert str(error) == "x/y: HTTP 503 Service Unavailable (empty response body)"


def test_unrecognised_json_body_names_status() -> None:
    error = parse_error_response(500, b"[1, 2]", operation=None, content_type="application/json")
    assert str(error).startswith("HTTP 500 Internal Server Error with an unrecognised error body")
    assert "[1, 2]" in str(error)


def test_gateway_error_without_envelope() -> None:
    body = _body({"code": "GW-0010", "message": "Rate limit exceeded"})
    error = parse_error_response(429, body, operation=None, content_type=None, retry_after=3.0)
    assert error.code == "GW-0010"
    assert error.retry_after == 3.0
    assert str(error) == "HTTP 429 Too Many Requests: Rate limit exceeded (GW-0010)"


def test_error_without_message_uses_detail_message() -> None:
    body = _body({"ia::error": {"code": "invalidRequest", "details": [{"message": "Bad date"}]}})
    error = parse_error_response(400, body, operation=None, content_type=None)
    assert error.message == "Bad date"


def test_refused_field_found_in_details() -> None:
    payload = {
        "ia::result": {
            "ia::error": {
                "code": "invalidRequest",
                "message": "Request failed",
                "details": [REST_1106_ERROR],
            }
        }
    }
    error = parse_error_response(400, _body(payload), operation=None, content_type=None)
    assert error.refused_query_field() == "action"


def test_extract_error_shapes_and_non_errors() -> None:
    inner = {"code": "notFound", "message": "nope"}
    assert extract_error({"ia::result": {"ia::error": inner}}) == inner
    assert extract_error({"ia::error": inner, "ia::meta": {}}) == inner
    assert extract_error({"error": inner}) == inner
    assert extract_error({"ia::result": [{"key": "1"}, {"ia::error": inner}]}) == inner
    assert extract_error({"ia::result": {"key": "1", "message": "hello"}}) is None
    assert extract_error([inner]) is None
    assert extract_error("error") is None


def test_secrets_echoed_by_server_are_scrubbed() -> None:
    payload = {
        "ia::error": {
            "code": "invalidRequest",
            "message": "Header Authorization: Bearer eyJhbGciOi.SECRETPART.sig is malformed",
            "details": [{"message": "refresh_token=PLANTED-REFRESH rejected"}],
        }
    }
    error = parse_error_response(400, _body(payload), operation=None, content_type=None)
    text = f"{error} {error!r}"
    assert "SECRETPART" not in text
    assert "PLANTED-REFRESH" not in text
    assert "[redacted]" in text


def test_scrub_keeps_ordinary_text() -> None:
    assert scrub("The customer field is required") == "The customer field is required"
    assert scrub('{"client_secret": "abc123"}') == '{"client_secret": "[redacted]"}'


def test_hierarchy_and_unknown_name_errors() -> None:
    error = UnknownOperationError("get-acounts", ["get-accounts", "get-account"])
    assert isinstance(error, IntacctError)
    assert error.name == "get-acounts"
    assert error.suggestions == ("get-accounts", "get-account")
    assert "did you mean: get-accounts, get-account?" in str(error)
    assert str(UnknownObjectError("ar/cust")) == "unknown object 'ar/cust'"
    assert issubclass(ConfigError, IntacctError)
    assert issubclass(IntacctAPIError, IntacctError)


def test_login_required_wraps_api_error() -> None:
    api = IntacctAPIError(401, "Token is not valid", error_id="REST-2102")
    error = LoginRequiredError(api_error=api)
    assert error.api_error is api
    assert "REST-2102" in str(error)
    assert "intacct login" in str(error)
    assert str(LoginRequiredError("no refresh token stored")) == "no refresh token stored"
