"""Fidelity: replay the recorded real Intacct traffic against a running emulator over HTTP.

For every interaction in tests/data/recorded/*.json (token, model, query) the same request is
sent to the emulator and the response *shape* is compared with what Sage returned: envelope
keys, paging meta, row keys, value types, and for the model service the top-level keys, the
attribute keys of every field, and the groups/refs/lists structure.

Known, documented differences (the emulator answers from the published spec, Sage's live model
came from a newer build of the same company): live-only members such as
``additionalQueryFilterParameters`` and custom relationships ``nsp::*``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from intacct_emulator.testing import EmulatorServer
from tests.support.paths import RECORDED

LIVE_ONLY_MODEL_KEYS = {"additionalQueryFilterParameters"}
FIELD_ATTRIBUTES = {"type", "readOnly", "writeOnly", "required", "nullable", "mutable"}


def _interactions() -> list[tuple[str, int, dict[str, Any]]]:
    found = []
    for path in sorted(RECORDED.glob("*.json")):
        data = json.loads(path.read_text())
        for index, interaction in enumerate(data["interactions"]):
            found.append((path.name, index, interaction))
    return found


INTERACTIONS = _interactions()


def _kind(interaction: dict[str, Any]) -> str:
    uri = interaction["request"]["uri"]
    for name in ("oauth2/token", "core/model", "core/query"):
        if name in uri:
            return name.split("/")[1]
    return "other"


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(seed_records=130, random_seed=3) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=server.auth_headers()) as http:
        yield http


def _recorded_body(interaction: dict[str, Any]) -> Any:
    return json.loads(interaction["response"]["body"]["string"])


def _path(uri: str) -> str:
    return urlsplit(uri).path.split("/ia/api/v1", 1)[1]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def test_every_recording_is_covered() -> None:
    kinds = {_kind(i) for _, _, i in INTERACTIONS}
    assert kinds == {"token", "model", "query"}
    assert len(INTERACTIONS) >= 15


@pytest.mark.parametrize(
    ("name", "index", "interaction"),
    [i for i in INTERACTIONS if _kind(i[2]) == "token"],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_token_response_shape(
    server: EmulatorServer, name: str, index: int, interaction: dict[str, Any]
) -> None:
    recorded = _recorded_body(interaction)
    form = parse_qs(interaction["request"]["body"])
    assert form["grant_type"] == ["client_credentials"]
    response = httpx.post(
        f"{server.base_url}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
            "username": "admin@DEMO",
        },
    )
    assert response.status_code == interaction["response"]["status"]["code"]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == set(recorded)
    assert {k: _json_type(v) for k, v in body.items()} == {
        k: _json_type(v) for k, v in recorded.items()
    }
    assert body["token_type"] == "Bearer"


def _compare_model_node(recorded: dict[str, Any], emulated: dict[str, Any], where: str) -> None:
    """groups/refs/lists structure and field attribute keys, recursively."""
    for section in ("fields", "groups", "refs", "lists"):
        assert (section in recorded) <= (section in emulated or section == "lists"), where
    rec_fields = recorded.get("fields", {})
    emu_fields = emulated.get("fields", {})
    if rec_fields:
        shared = set(rec_fields) & set(emu_fields)
        assert len(shared) >= 0.8 * len(rec_fields), f"{where}: {set(rec_fields) - shared}"
        for field in shared:
            rec_attrs, emu_attrs = rec_fields[field], emu_fields[field]
            assert set(emu_attrs) >= FIELD_ATTRIBUTES, f"{where}.{field}"
            assert set(emu_attrs) - FIELD_ATTRIBUTES <= {"format", "enum", "default", "deprecated"}
            for attribute in FIELD_ATTRIBUTES:
                assert _json_type(emu_attrs[attribute]) == _json_type(rec_attrs[attribute]), (
                    f"{where}.{field}.{attribute}"
                )
            assert emu_attrs["required"] is False
    for group, rec_group in recorded.get("groups", {}).items():
        assert group in emulated.get("groups", {}), f"{where}: group {group}"
        _compare_model_node(rec_group, emulated["groups"][group], f"{where}.{group}")
    for ref, rec_ref in recorded.get("refs", {}).items():
        if ref.startswith("nsp::"):
            continue  # custom relationships of the recorded company
        assert ref in emulated.get("refs", {}), f"{where}: ref {ref}"
        emu_ref = emulated["refs"][ref]
        assert isinstance(emu_ref["apiObject"], str), f"{where}.{ref}"
        assert isinstance(rec_ref["apiObject"], str)
        _compare_model_node(rec_ref, emu_ref, f"{where}.{ref}")
    rec_lists = recorded.get("lists")
    if isinstance(rec_lists, dict):
        emu_lists = emulated["lists"]
        assert set(rec_lists) <= set(emu_lists), where
        for name in rec_lists:
            assert set(emu_lists[name]) == set(rec_lists[name]) == {"apiObject"}
            assert emu_lists[name]["apiObject"] == rec_lists[name]["apiObject"]
    elif rec_lists is not None:
        assert emulated["lists"] == rec_lists  # [] when an object owns nothing


@pytest.mark.parametrize(
    ("name", "index", "interaction"),
    [i for i in INTERACTIONS if _kind(i[2]) == "model"],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_model_response_shape(
    client: httpx.Client, name: str, index: int, interaction: dict[str, Any]
) -> None:
    uri = interaction["request"]["uri"]
    response = client.get(_path(uri), params=parse_qs(urlsplit(uri).query))
    assert response.status_code == 200
    body = response.json()
    recorded = _recorded_body(interaction)
    assert set(body) == set(recorded) == {"ia::result", "ia::meta"}
    assert body["ia::meta"] == recorded["ia::meta"]
    rec_result, emu_result = recorded["ia::result"], body["ia::result"]
    assert set(emu_result) == set(rec_result) - LIVE_ONLY_MODEL_KEYS
    for key in ("httpMethods", "idempotenceSupported", "apiObject", "type", "href"):
        assert emu_result[key] == rec_result[key], key
    _compare_model_node(rec_result, emu_result, rec_result["apiObject"])


@pytest.mark.parametrize(
    ("name", "index", "interaction"),
    [i for i in INTERACTIONS if _kind(i[2]) == "query"],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_query_response_shape(
    client: httpx.Client, name: str, index: int, interaction: dict[str, Any]
) -> None:
    request = json.loads(interaction["request"]["body"])
    response = client.post("/services/core/query", json=request)
    assert response.status_code == interaction["response"]["status"]["code"]
    body = response.json()
    recorded = _recorded_body(interaction)
    assert set(body) == set(recorded)
    meta, rec_meta = body["ia::meta"], recorded["ia::meta"]
    assert set(meta) == set(rec_meta)
    assert (meta["start"], meta["pageSize"]) == (rec_meta["start"], rec_meta["pageSize"])
    assert (meta["previous"] is None) == (rec_meta["previous"] is None)
    if rec_meta["next"] is not None:  # the recorded GL accounts: 128 rows, two pages
        assert meta["next"] == rec_meta["next"]
    if rec_meta["previous"] is not None:
        assert meta["previous"] == rec_meta["previous"]
    assert meta["totalCount"] >= len(body["ia::result"])
    rows = body["ia::result"]
    if rec_meta["totalCount"]:
        assert rows, "the seeded company should answer the recorded query with rows"
    observed: dict[str, set[str]] = {}
    for row in recorded["ia::result"]:
        for field, value in row.items():
            observed.setdefault(field, set()).add(_json_type(value))
    for row in rows:
        assert list(row) == request["fields"]  # flat, literal keys, in request order
        for field, value in row.items():
            seen = observed.get(field, set()) - {"null"}
            if value is not None and seen:
                assert _json_type(value) in seen, f"{field}: {value!r} vs {seen}"
        assert row["href"] == f"/objects/{request['object']}/{row['key']}"
