"""Property-based conformance run of the emulator against the embedded spec (over HTTP).

Equivalent of a schemathesis run, built directly from the registry: for the everyday objects,
hypothesis generates create bodies from each create operation's request schema (types, enums,
formats, required members, plus deliberately wrong values), sends them to a running emulator,
and every answer is validated against the spec: 2xx bodies against the operation's response
schema, errors against the spec's ``error-response`` schema. Read-backs (get, list, query) are
validated too. GET bodies are checked against the response schema with the record treatment
(members nullable), because Intacct returns unset members as ``null``, which the raw spec omits.

Bounded: a few examples per object and a per-example deadline; the module runs in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intacct_api.schema import SchemaResolver, to_record_schema
from intacct_api.spec import default_registry
from intacct_api.specs_location import embedded_spec_files
from intacct_emulator.testing import EmulatorServer

pytestmark = pytest.mark.slow

EVERYDAY = (
    "accounts-receivable/customer",
    "accounts-payable/vendor",
    "general-ledger/account",
    "company-config/department",
    "company-config/location",
    "company-config/class",
)
REGISTRY = default_registry()
Draft = jsonschema.Draft202012Validator


def _error_schema() -> dict[str, Any]:
    for path in embedded_spec_files():
        if path.name == "common-resources.json":
            resolver = SchemaResolver(json.loads(path.read_text()), path.name)
            return resolver.component("error-response")
    raise AssertionError("common-resources.json is not embedded")


ERROR_SCHEMA = _error_schema()


def _scalar(schema: Mapping[str, Any]) -> st.SearchStrategy[Any] | None:
    enum = [e for e in schema.get("enum") or [] if e is not None]
    if enum:
        return st.sampled_from(enum)
    typ = schema.get("type")
    types = typ if isinstance(typ, list) else [typ]
    fmt = schema.get("format")
    if fmt == "date":
        return st.dates().map(lambda d: d.isoformat())
    if isinstance(fmt, str) and "precision" in fmt:
        return st.decimals(min_value=0, max_value=10**6, places=2).map(str)
    if "boolean" in types:
        return st.booleans()
    if "integer" in types:
        return st.integers(min_value=0, max_value=10**6)
    if "number" in types:
        return st.integers(min_value=0, max_value=10**6)
    if "string" in types and fmt is None:
        return st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=24)
    return None


def _body_strategy(object_name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies from the create request schema; one in four gets a wrong-typed member."""
    info = REGISTRY.objects[object_name]
    assert info.create_operation_id is not None
    schema = REGISTRY.operations[info.create_operation_id].request_schema() or {}
    required_names = set(schema.get("required", ()))
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, sub in (schema.get("properties") or {}).items():
        if sub.get("readOnly") or sub.get("deprecated"):
            continue
        strategy = _scalar(sub)
        if strategy is None:
            continue
        (required if name in required_names else optional)[name] = strategy
    good = st.fixed_dictionaries(required, optional=optional)
    wrong = st.fixed_dictionaries(
        required, optional={name: st.just({"not": "scalar"}) for name in optional}
    )
    return st.one_of(good, good, good, wrong)


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with (
        EmulatorServer(seed_records=5, random_seed=11) as server,
        httpx.Client(base_url=server.base_url, headers=server.auth_headers()) as http,
    ):
        yield http


def _check(schema: Mapping[str, Any], body: Any, what: str) -> None:
    errors = sorted(Draft(schema).iter_errors(body), key=lambda e: list(e.path))
    assert not errors, f"{what}: {errors[0].message} at {list(errors[0].path)}"


def _get_schema(object_name: str) -> dict[str, Any]:
    info = REGISTRY.objects[object_name]
    assert info.get_operation_id is not None
    schema = dict(REGISTRY.operations[info.get_operation_id].response_schema() or {})
    props = dict(schema["properties"])
    props["ia::result"] = to_record_schema(props["ia::result"])
    schema["properties"] = props
    return schema


@pytest.mark.parametrize("object_name", EVERYDAY)
def test_generated_writes_conform_to_the_spec(client: httpx.Client, object_name: str) -> None:
    info = REGISTRY.objects[object_name]
    assert info.create_operation_id
    assert info.list_operation_id
    create_response = REGISTRY.operations[info.create_operation_id].response_schema() or {}
    list_response = REGISTRY.operations[info.list_operation_id].response_schema() or {}
    get_response = _get_schema(object_name)
    statuses: list[int] = []

    @settings(
        max_examples=12,
        deadline=2000,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(body=_body_strategy(object_name))
    def run(body: dict[str, Any]) -> None:
        response = client.post(f"/objects/{object_name}", json=body)
        statuses.append(response.status_code)
        assert response.status_code in (201, 400, 409), response.text
        payload = response.json()
        if response.status_code != 201:
            _check(ERROR_SCHEMA, payload, f"POST {object_name} -> {response.status_code}")
            return
        _check(create_response, payload, f"POST {object_name}")
        key = payload["ia::result"]["key"]
        fetched = client.get(f"/objects/{object_name}/{key}")
        assert fetched.status_code == 200
        _check(get_response, fetched.json(), f"GET {object_name}/{key}")
        for name, value in body.items():
            assert fetched.json()["ia::result"][name] == value, name

    run()
    assert 201 in statuses  # the run really wrote records, not only errors
    listing = client.get(f"/objects/{object_name}")
    assert listing.status_code == 200
    _check(list_response, listing.json(), f"GET {object_name} (list)")
    query = client.post(
        "/services/core/query",
        json={"object": object_name, "fields": ["key", "id", "href"], "size": 10},
    )
    assert query.status_code == 200
    _check(list_response, query.json(), f"query {object_name}")


def test_error_envelope_of_bad_query_conforms(client: httpx.Client) -> None:
    response = client.post(
        "/services/core/query",
        json={"object": "accounts-receivable/invoice", "fields": ["key", "action"]},
    )
    assert response.status_code == 400
    _check(ERROR_SCHEMA, response.json(), "REST-1106")
