"""Fault injection over real HTTP: throttling headers, injected errors, latency, dropped
connections, concurrency limits, and that faults stay off the control and OAuth endpoints."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from intacct_emulator.faults import RETRY_AFTER_HEADERS
from intacct_emulator.testing import EmulatorProcess, EmulatorServer

QUERY = {"object": "accounts-payable/vendor", "fields": ["key", "id"]}
MODEL = ("/services/core/model", {"name": "accounts-payable/vendor"})


def _query(api: httpx.Client) -> httpx.Response:
    return api.post("/services/core/query", json=QUERY)


def _error(response: httpx.Response) -> dict[str, Any]:
    return response.json()["ia::result"]["ia::error"]


def test_fail_next_is_deterministic_and_then_clears(emu: EmulatorServer, api: httpx.Client) -> None:
    knobs = emu.set_faults(fail_next=[429, 503, 500, 404])
    assert knobs["fail_next"] == [429, 503, 500, 404]
    statuses = [_query(api).status_code for _ in range(5)]
    assert statuses == [429, 503, 500, 404, 200]
    assert emu.set_faults()["fail_next"] == []
    assert emu.stats()["responses"] == {"200": 2, "404": 1, "429": 1, "500": 1, "503": 1}


def test_injected_errors_use_the_intacct_envelope(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.set_faults(fail_next=[503, 500], retry_after_seconds=2)
    unavailable = _query(api)
    assert _error(unavailable)["code"] == "serviceUnavailable"
    assert unavailable.headers["retry-after"] == "2"
    internal = _query(api)
    assert _error(internal)["errorId"] == "GW-0001"
    assert _error(internal)["supportId"]


@pytest.mark.parametrize("header", [None, *RETRY_AFTER_HEADERS])
def test_429_carries_the_chosen_retry_after_header(
    emu: EmulatorServer, api: httpx.Client, header: str | None
) -> None:
    emu.set_faults(fail_next=[429], retry_after_header=header, retry_after_seconds=0.25)
    response = _query(api)
    assert response.status_code == 429
    expected = header or "X-IA-Throttle-Limit-RetryAfter"
    assert response.headers[expected] == "0.25"
    others = [h for h in RETRY_AFTER_HEADERS if h != expected]
    assert not any(h in response.headers for h in others)
    assert response.headers["x-ia-throttle-limit-remaining"] == "0"
    assert _error(response)["errorId"] == "GW-0010"


def test_random_500_503_follow_the_seed(emu: EmulatorServer, api: httpx.Client) -> None:
    def run() -> list[int]:
        emu.set_faults(random_seed=1234, error_rate_500=0.25, error_rate_503=0.25)
        return [_query(api).status_code for _ in range(40)]

    first = run()
    second = run()
    assert first == second
    counts = Counter(first)
    assert set(counts) == {200, 500, 503}
    assert 8 <= counts[200] <= 32
    emu.set_faults(random_seed=99)
    assert [_query(api).status_code for _ in range(40)] != first


def test_latency_and_jitter(emu: EmulatorServer, api: httpx.Client) -> None:
    _query(api)  # warm the connection
    knobs = emu.set_faults(latency_ms=120, latency_jitter_ms=40)
    assert (knobs["latency_ms"], knobs["latency_jitter_ms"]) == (120, 40)
    started = time.perf_counter()
    assert _query(api).status_code == 200
    # Only a lower bound: the server must have held the answer; an upper bound would be a
    # timed assertion at the mercy of the machine's load.
    assert time.perf_counter() - started >= 0.12
    knobs = emu.set_faults(latency_ms=0, latency_jitter_ms=0)
    assert (knobs["latency_ms"], knobs["latency_jitter_ms"]) == (0, 0)


def test_dropped_connection_is_a_protocol_error(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.set_faults(drop_next=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.get(MODEL[0], params=MODEL[1])
    assert api.get(MODEL[0], params=MODEL[1]).status_code == 200
    emu.set_faults(random_seed=5, drop_connection_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        _query(api)


def test_dropped_create_is_replayed_by_idempotency_key(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    """The point of Idempotency-Key: the write happened, the answer got lost, the retry is safe."""
    vendor = "/objects/accounts-payable/vendor"
    body = {"id": "V1", "name": "Acme"}
    headers = {"Idempotency-Key": "lost-response"}
    emu.set_faults(drop_next=1)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        api.post(vendor, json=body, headers=headers)
    retry = api.post(vendor, json=body, headers=headers)
    assert retry.status_code == 201
    assert retry.headers["x-ia-idempotency-cached-date"]
    assert api.get(vendor).json()["ia::meta"]["totalCount"] == 1


def test_concurrency_limit_answers_429_with_throttle_headers(emu: EmulatorServer) -> None:
    emu.reset()
    headers = emu.auth_headers()
    emu.set_faults(max_concurrent=2, latency_ms=400)
    responses: list[httpx.Response] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def call() -> None:
        with httpx.Client(base_url=emu.base_url, headers=headers, timeout=10) as client:
            barrier.wait()
            response = client.post("/services/core/query", json=QUERY)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    by_status = Counter(r.status_code for r in responses)
    assert by_status == {200: 2, 429: 2}
    for response in responses:
        assert response.headers["x-ia-throttle-limit"] == "2"
        if response.status_code == 429:
            assert response.headers["x-ia-throttle-limit-remaining"] == "0"
            assert response.headers["x-ia-throttle-limit-retryafter"] == "1"
        else:
            assert int(response.headers["x-ia-throttle-limit-remaining"]) in (0, 1)


def test_rate_per_minute(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.set_faults(rate_per_minute=3)
    ok = [_query(api) for _ in range(3)]
    assert [r.headers["x-ia-minute-rate-limit-remaining"] for r in ok] == ["2", "1", "0"]
    limited = _query(api)
    assert limited.status_code == 429
    assert limited.headers["x-ia-minute-rate-limit"] == "3"
    assert limited.headers["x-ia-minute-rate-limit-remaining"] == "0"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    emu.set_faults(rate_per_minute=None)
    assert _query(api).status_code == 200


def test_faults_skip_control_and_oauth_unless_asked(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.set_faults(error_rate_503=1.0)
    assert emu.stats()["requests"]  # control endpoints unaffected
    assert emu.token()["access_token"]  # OAuth unaffected by default
    assert _query(api).status_code == 503
    emu.set_faults(faults_on_oauth=True)
    with pytest.raises(httpx.HTTPStatusError):
        emu.token()


def test_bad_knobs_are_refused_and_leave_knobs_unchanged(emu: EmulatorServer) -> None:
    emu.reset()
    for bad in (
        {"error_rate_500": 2},
        {"no_such_knob": 1},
        {"retry_after_header": "X-Nope"},
        {"fail_next": [200]},
        {"latency_ms": "slow"},
    ):
        response = emu.http.post(emu.root_url + "/_emulator/faults", json=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]
    assert emu.set_faults()["error_rate_500"] == 0


def test_refuse_query_fields_reaches_the_query_service(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    knobs = emu.set_faults(refuse_query_fields={"accounts-payable/vendor": ["id"]})
    assert knobs["refuse_query_fields"]["accounts-payable/vendor"] == ["id"]
    refused = _query(api)
    assert refused.status_code == 400
    error = _error(refused)
    assert error["errorId"] == "REST-1106"
    assert error["additionalInfo"]["placeholders"]["FIELD"] == "id"
    emu.reset(tokens=False)
    assert _query(api).status_code == 200


def test_cli_flags_set_start_up_knobs() -> None:
    with EmulatorProcess(["--rate-per-minute", "2", "--max-concurrent", "5"]) as proc:
        knobs = proc.set_faults()
        assert (knobs["rate_per_minute"], knobs["max_concurrent"]) == (2, 5)
        with httpx.Client(base_url=proc.base_url, headers=proc.auth_headers()) as api:
            statuses = [_query(api).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        proc.reset()
        assert proc.set_faults()["rate_per_minute"] == 2  # reset returns to start-up knobs
