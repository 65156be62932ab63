"""The emulator's HTTP layer over real loopback HTTP: routing, envelopes, stats, reset, headers,
batch limits and Idempotency-Key replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from intacct_emulator.testing import EmulatorProcess, EmulatorServer

VENDOR = "/objects/accounts-payable/vendor"


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"ia::result", "ia::meta"}
    assert body["ia::meta"] == {"totalCount": 1, "totalSuccess": 0, "totalError": 1}
    return body["ia::result"]["ia::error"]


def test_health_is_outside_the_api_and_not_counted(emu: EmulatorServer, api: httpx.Client) -> None:
    health = httpx.get(emu.root_url + "/_emulator/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["apiPrefix"] == "/ia/api/v1"
    assert emu.stats()["requests"] == {"POST /oauth2/token": 1}


def test_crud_routes_and_stats_keys(emu: EmulatorServer, api: httpx.Client) -> None:
    created = api.post(VENDOR, json={"id": "V1", "name": "Acme"})
    assert created.status_code == 201
    key = created.json()["ia::result"]["key"]
    batch = api.post(VENDOR, json=[{"id": "V2", "name": "B"}, {"id": "V3", "name": "C"}])
    assert batch.status_code == 201
    keys = [ref["key"] for ref in batch.json()["ia::result"]]

    got = api.get(f"{VENDOR}/{key}")
    assert got.status_code == 200
    assert got.json()["ia::result"]["name"] == "Acme"
    several = api.get(f"{VENDOR}/{','.join(keys)}")
    assert [r["id"] for r in several.json()["ia::result"]] == ["V2", "V3"]

    patched = api.patch(f"{VENDOR}/{key}", json={"name": "Acme 2"})
    assert patched.status_code == 200
    batch_patch = api.patch(VENDOR, json=[{"key": k, "name": "renamed"} for k in keys])
    assert batch_patch.status_code == 200
    assert api.get(f"{VENDOR}/{keys[1]}").json()["ia::result"]["name"] == "renamed"

    listed = api.get(VENDOR)
    assert listed.json()["ia::meta"]["totalCount"] == 3
    query = api.post(
        "/services/core/query",
        json={
            "object": "accounts-payable/vendor",
            "fields": ["id", "name"],
            "orderBy": [{"id": "asc"}],
        },
    )
    assert [r["name"] for r in query.json()["ia::result"]] == ["Acme 2", "renamed", "renamed"]
    model = api.get("/services/core/model", params={"name": "accounts-payable/vendor"})
    assert "fields" in model.json()["ia::result"]

    deleted = api.delete(f"{VENDOR}/{','.join(keys)}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert api.get(f"{VENDOR}/{keys[0]}").status_code == 404

    assert emu.stats()["requests"] == {
        "POST /oauth2/token": 1,
        "POST /objects/accounts-payable/vendor": 2,
        "GET /objects/accounts-payable/vendor/{key}": 4,
        "PATCH /objects/accounts-payable/vendor/{key}": 1,
        "PATCH /objects/accounts-payable/vendor": 1,
        "GET /objects/accounts-payable/vendor": 1,
        "POST /services/core/query": 1,
        "GET /services/core/model": 1,
        "DELETE /objects/accounts-payable/vendor/{key}": 1,
    }
    assert emu.stats()["responses"]["404"] == 1


def test_reset_clears_stats_data_and_tokens(emu: EmulatorServer, api: httpx.Client) -> None:
    assert api.post(VENDOR, json={"id": "V1", "name": "Acme"}).status_code == 201
    emu.set_faults(latency_ms=5)
    emu.reset()
    assert emu.stats()["requests"] == {}
    assert emu.set_faults()["latency_ms"] == 0
    stale = api.get(VENDOR)
    assert stale.status_code == 401
    fresh = httpx.get(emu.base_url + VENDOR, headers=emu.auth_headers())
    assert fresh.json()["ia::meta"]["totalCount"] == 0


def test_reset_can_keep_tokens(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.reset(tokens=False)
    assert api.get(VENDOR).status_code == 200
    bad = httpx.post(emu.root_url + "/_emulator/reset", json={"everything": False})
    assert bad.status_code == 400


def test_unknown_paths_objects_and_methods_answer_in_the_envelope(api: httpx.Client) -> None:
    unknown_path = api.get("/services/core/nothing-here")
    assert unknown_path.status_code == 404
    assert _error(unknown_path)["code"] == "notFound"

    unknown_object = api.get("/objects/accounts-payable/no-such-object")
    assert unknown_object.status_code == 404
    assert _error(unknown_object)["code"] == "notFound"

    wrong_method = api.delete(VENDOR)
    assert wrong_method.status_code == 405
    assert _error(wrong_method)["code"] == "methodNotAllowed"


def test_unknown_path_still_needs_a_token(emu: EmulatorServer) -> None:
    response = httpx.get(emu.base_url + "/services/core/nothing-here")
    assert response.status_code == 401


def test_batch_above_500_records_is_refused_without_writing(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    records = [{"id": f"V{i}", "name": f"n{i}"} for i in range(501)]
    response = api.post(VENDOR, json=records)
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalidRequest"
    assert "500" in error["message"]
    assert api.get(VENDOR).json()["ia::meta"]["totalCount"] == 0
    too_many_keys = api.get(f"{VENDOR}/{','.join(str(i) for i in range(1, 502))}")
    assert too_many_keys.status_code == 400
    assert "501" in _error(too_many_keys)["message"]
    exactly_500_keys = api.get(f"{VENDOR}/{','.join(str(i) for i in range(1, 501))}")
    assert exactly_500_keys.status_code != 400  # at the limit: the data layer answers per key


def test_payload_errors(api: httpx.Client) -> None:
    missing = api.post(VENDOR, content=b"", headers={"Content-Type": "application/json"})
    assert missing.status_code == 400
    assert _error(missing)["errorId"] == "REST-1028"
    broken = api.post(
        "/services/core/query", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert _error(broken)["code"] == "invalidRequest"
    not_object = api.post("/services/core/query", json=["a"])
    assert not_object.status_code == 400


def test_idempotency_key_replays_and_conflicts(emu: EmulatorServer, api: httpx.Client) -> None:
    headers = {"Idempotency-Key": "create-acme-1"}
    first = api.post(VENDOR, json={"id": "V1", "name": "Acme"}, headers=headers)
    assert first.status_code == 201
    assert "x-ia-idempotency-cached-date" not in first.headers
    again = api.post(VENDOR, json={"id": "V1", "name": "Acme"}, headers=headers)
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["x-ia-idempotency-cached-date"].endswith("Z")
    assert again.headers["idempotency-key"] == "create-acme-1"
    assert api.get(VENDOR).json()["ia::meta"]["totalCount"] == 1

    other_body = api.post(VENDOR, json={"id": "V2", "name": "Other"}, headers=headers)
    assert other_body.status_code == 409
    assert _error(other_body)["code"] == "conflict"

    # The key belongs to the client: another client's same key is a fresh request.
    other_client = httpx.post(
        emu.base_url + VENDOR,
        json={"id": "V1", "name": "Acme"},
        headers={**headers, **emu.auth_headers()},
    )
    assert other_client.status_code == 201  # same client id, so replayed
    assert other_client.headers["x-ia-idempotency-cached-date"]

    key = first.json()["ia::result"]["key"]
    patch_headers = {"Idempotency-Key": "patch-1"}
    assert (
        api.patch(f"{VENDOR}/{key}", json={"name": "B"}, headers=patch_headers).status_code == 200
    )
    replay = api.patch(f"{VENDOR}/{key}", json={"name": "B"}, headers=patch_headers)
    assert "x-ia-idempotency-cached-date" in replay.headers
    assert (
        api.patch(f"{VENDOR}/{key}", json={"name": "C"}, headers=patch_headers).status_code == 409
    )
    assert api.get(f"{VENDOR}/{key}").json()["ia::result"]["name"] == "B"


def test_failed_requests_are_not_replayed(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": "dup"}
    api.post(VENDOR, json={"id": "V1", "name": "Acme"})
    duplicate = api.post(VENDOR, json={"id": "V1", "name": "Acme"}, headers=headers)
    assert duplicate.status_code == 409  # the data layer's unique-id conflict
    retried = api.post(VENDOR, json={"id": "V1", "name": "Acme"}, headers=headers)
    assert retried.status_code == 409
    assert "x-ia-idempotency-cached-date" not in retried.headers


def test_entity_headers_and_token_entity_reach_the_company(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    hyphenated = api.post(
        VENDOR, json={"id": "V1", "name": "a"}, headers={"X-IA-API-Param-Entity": "E1"}
    )
    docs_spelling = api.post(
        VENDOR, json={"id": "V2", "name": "b"}, headers={"X-IA-API-ParamEntity": "E2"}
    )
    top_level = api.post(VENDOR, json={"id": "V3", "name": "c"})
    entity_token = emu.auth_headers(username="admin@DEMO|E3")
    from_token = httpx.post(
        emu.base_url + VENDOR, json={"id": "V4", "name": "d"}, headers=entity_token
    )
    override = httpx.post(
        emu.base_url + VENDOR,
        json={"id": "V5", "name": "e"},
        headers={**entity_token, "X-IA-API-Param-Entity": ""},
    )
    stored = {
        r.json()["ia::result"]["id"]: emu.company.store.get(
            "accounts-payable/vendor", int(r.json()["ia::result"]["key"])
        ).entity
        for r in (hyphenated, docs_spelling, top_level, from_token, override)
    }
    assert stored == {"V1": "E1", "V2": "E2", "V3": None, "V4": "E3", "V5": None}


def test_transaction_header_makes_a_batch_atomic(api: httpx.Client) -> None:
    api.post(VENDOR, json={"id": "V1", "name": "Acme"})
    batch = [{"id": "V2", "name": "new"}, {"id": "V1", "name": "duplicate id"}]
    partial = api.post(VENDOR, json=batch)
    assert partial.status_code == 207
    assert api.get(VENDOR).json()["ia::meta"]["totalCount"] == 2
    atomic = api.post(
        VENDOR,
        json=[{"id": "V3", "name": "new"}, {"id": "V1", "name": "duplicate id"}],
        headers={"X-IA-API-Param-Transaction": "true"},
    )
    assert atomic.status_code >= 400
    assert api.get(VENDOR).json()["ia::meta"]["totalCount"] == 2


def test_console_script_process_serves_and_stops(tmp_path: Path) -> None:
    db = tmp_path / "company.sqlite"
    with EmulatorProcess(["--db", str(db), "--client", "etl:s3cret:etl@ACME"]) as proc:
        assert proc.base_url.startswith("http://127.0.0.1:")
        assert "demo-client" in "".join(proc.output)
        assert "s3cret" not in "".join(proc.output)
        headers = proc.auth_headers(client_id="etl", client_secret="s3cret", username="etl@ACME")
        created = httpx.post(
            proc.base_url + VENDOR, json={"id": "V1", "name": "Kept"}, headers=headers
        )
        assert created.status_code == 201
        assert proc.requests()["POST /objects/accounts-payable/vendor"] == 1
        keyed = httpx.post(
            proc.base_url + VENDOR,
            json={"id": "V2", "name": "Once"},
            headers={"Idempotency-Key": "across-restart", **proc.auth_headers()},
        )
        assert keyed.status_code == 201
    assert proc.returncode == 0
    # A file database survives the restart (tokens do not: they live in memory).
    with EmulatorProcess(["--db", str(db)]) as again:
        query = httpx.post(
            again.base_url + "/services/core/query",
            json={"object": "accounts-payable/vendor", "fields": ["id", "name"]},
            headers=again.auth_headers(),
        )
        assert query.json()["ia::result"] == [
            {"id": "V1", "name": "Kept"},
            {"id": "V2", "name": "Once"},
        ]
        # Idempotency keys live in the same file, so a retry after a restart still replays.
        replay = httpx.post(
            again.base_url + VENDOR,
            json={"id": "V2", "name": "Once"},
            headers={"Idempotency-Key": "across-restart", **again.auth_headers()},
        )
        assert replay.status_code == 201
        assert replay.content == keyed.content
        assert replay.headers["x-ia-idempotency-cached-date"]


def test_an_encoded_comma_stays_inside_one_key(emu: EmulatorServer) -> None:
    """`1%2C2` names one (missing) record, never records 1 and 2."""
    emu.reset()
    with httpx.Client(base_url=emu.base_url, headers=emu.auth_headers(), timeout=10) as http:
        created = http.post(VENDOR, json=[{"id": "K1", "name": "a"}, {"id": "K2", "name": "b"}])
        assert created.status_code in (200, 201)
        keys = [r["key"] for r in created.json()["ia::result"]]
        deleted = http.delete(f"{VENDOR}/{keys[0]}%2C{keys[1]}")
        assert deleted.status_code == 404
        both = http.get(f"{VENDOR}/{keys[0]},{keys[1]}")
        assert [r["key"] for r in both.json()["ia::result"]] == keys


def test_a_body_that_is_not_json_is_rest_1064_naming_the_root(api: httpx.Client) -> None:
    response = api.post(VENDOR, content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = _error(response)
    assert (error["code"], error["errorId"], error["message"]) == (
        "invalidRequest",
        "REST-1064",
        "Payload contains errors",
    )
    assert error["additionalInfo"]["messageId"] == "IA.PAYLOAD_CONTAINS_ERRORS"
    assert [(d["target"], d["message"]) for d in error["details"]] == [
        ("/", "The request body is not valid JSON")
    ]
