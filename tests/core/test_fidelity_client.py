"""Issue 12: what a real Intacct does that the connector used to mis-handle, each reproduced by
an emulator switch and driven through the emulator over loopback HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from intacct_api.cli.app import build_app
from intacct_api.client import IntacctClient
from intacct_api.errors import IntacctAPIError
from intacct_api.pager import PagingLoopError, QueryPager
from intacct_api.retry import Pacer, RetryPolicy, Wait
from intacct_api.settings import ConnectionSettings
from intacct_emulator.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_USERNAME
from intacct_emulator.faults import TOO_LARGE_MESSAGE
from intacct_emulator.testing import EmulatorServer
from tap_intacct.tap import TapIntacct
from tests.support.connection import demo_connection
from tests.support.tap_runs import sync_messages

CUSTOMER = "accounts-receivable/customer"
VENDOR = "accounts-payable/vendor"
INVOICE = "accounts-receivable/invoice"
CONTACT = "company-config/contact"  # no audit.modifiedDateTime: keyset on key alone
VENDOR_STREAM = "accounts_payable__vendor"
COUNTS = {CUSTOMER: 40, VENDOR: 120, CONTACT: 230}
QUERY_PATH = "POST /services/core/query"
TOKEN_PATH = "POST /oauth2/token"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        for name, count in COUNTS.items():
            server.company.seed_object(name, count, 3)
        yield server


@pytest.fixture
def emu(emulator: EmulatorServer) -> EmulatorServer:
    emulator.reset(data=False)
    return emulator


def settings_for(server: EmulatorServer, tmp_path: Path, **extra: Any) -> ConnectionSettings:
    return ConnectionSettings(
        base_url=server.base_url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        token_store=str(tmp_path / "tokens.json"),
        **extra,
    )


class Sleeps:
    """Injected sleep: records each pause, and can run an action standing for time passing."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.on_sleep: Any = None

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(emu: EmulatorServer, tmp_path: Path, sleeps: Sleeps) -> Iterator[IntacctClient]:
    policy = RetryPolicy(max_retries=4, sleep=sleeps, rand=lambda: 0.0)
    with IntacctClient(settings_for(emu, tmp_path), retry_policy=policy) as api:
        yield api


def count(server: EmulatorServer, name: str) -> int:
    return server.requests().get(name, 0)


def tap_config(server: EmulatorServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        **demo_connection(server.base_url, tmp_path),
        "objects": [VENDOR, CUSTOMER],
        "page_size": 50,
        **extra,
    }


def records(messages: list[dict[str, Any]], stream: str) -> list[dict[str, Any]]:
    return [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == stream]


def final_state(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return [m for m in messages if m["type"] == "STATE"][-1]["value"]


# -- 1. model service: an object the tenant lacks is 200 with an empty result ------------------


def test_model_for_an_object_the_tenant_lacks_is_skipped_with_one_warning(
    emu: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emu.set_faults(tenant_lacks_objects=[VENDOR])
    raw = emu.http.get(
        emu.base_url + "/services/core/model",
        params={"name": VENDOR},
        headers=emu.auth_headers(),
    )
    assert (raw.status_code, raw.json()) == (200, {"ia::result": []})
    tap = TapIntacct(config=tap_config(emu, tmp_path, schema_source="model"))
    try:
        names = sorted(tap.streams)
    finally:
        tap.close()
    assert names == ["accounts_receivable__customer"]
    said = [r.getMessage() for r in caplog.records if "refused this object" in r.getMessage()]
    assert len(said) == 1
    assert VENDOR in said[0]
    assert "not available to this company" in said[0]


# -- 2. an invalid/expired token answered 400 REST-1206 ------------------------------------------


def test_rest_1206_on_a_400_refreshes_and_resends_once(
    emu: EmulatorServer, client: IntacctClient
) -> None:
    body = {"object": CUSTOMER, "fields": ["key"], "size": 1}
    assert client.query(body).status == 200
    tokens_before = count(emu, TOKEN_PATH)
    emu.set_faults(token_error_status=400, expire_tokens_now=True)
    answer = client.query(body).json()
    assert answer["ia::result"][0]["key"]
    stats = emu.stats()
    assert count(emu, TOKEN_PATH) == tokens_before + 1  # exactly one refresh
    assert stats["responses"].get("400", 0) == 1


def test_a_400_that_is_not_about_the_token_is_not_retried(
    emu: EmulatorServer, client: IntacctClient
) -> None:
    client.query({"object": CUSTOMER, "fields": ["key"], "size": 1})
    tokens_before = count(emu, TOKEN_PATH)
    with pytest.raises(IntacctAPIError) as info:
        client.query({"object": CUSTOMER, "fields": ["noSuchField"]})
    assert info.value.status == 400
    assert not info.value.is_token_invalid()
    assert count(emu, TOKEN_PATH) == tokens_before


# -- 3. objects whose query refuses audit.modifiedDateTime ---------------------------------------


def test_refused_replication_field_falls_back_to_full_table_remembered_in_state(
    emu: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emu.set_faults(refuse_query_fields={VENDOR: ["audit.modifiedDateTime"]})
    config = tap_config(emu, tmp_path)
    caplog.set_level(logging.INFO)
    first = sync_messages(config)
    vendors = records(first, VENDOR_STREAM)
    assert sorted(int(r["key"]) for r in vendors) == list(range(1, COUNTS[VENDOR] + 1))
    assert all(r["_modified_at"] is None for r in vendors)
    assert len(records(first, "accounts_receivable__customer")) == COUNTS[CUSTOMER]
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "read in full" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert "audit.modifiedDateTime" in warnings[0]
    state = final_state(first)
    remembered = state["bookmarks"][VENDOR_STREAM]["incremental_refused"]
    assert remembered == {"field": "audit.modifiedDateTime", "error": "REST-1106"}

    caplog.clear()
    emu.reset(data=False, faults=False, tokens=False)
    second = sync_messages(config, state=state)
    assert len(records(second, VENDOR_STREAM)) == COUNTS[VENDOR]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # the remembered refusal: no refused query is sent again (3 pages of 50 vendors + 1
    # page of customers, whose bookmark makes it incremental)
    assert emu.stats()["responses"].get("400", 0) == 0
    assert count(emu, QUERY_PATH) == 4


@pytest.mark.parametrize("form", ["placeholder", "details_field_path"])
def test_refused_field_in_either_error_form_is_dropped_once(
    emu: EmulatorServer, client: IntacctClient, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    emu.set_faults(refused_field_form=form, refuse_query_fields={CUSTOMER: ["name"]})
    pager = QueryPager(client, CUSTOMER, ["key", "id", "name"], page_size=25)
    rows = [row for page in pager for row in page]
    assert len(rows) == COUNTS[CUSTOMER]
    assert pager.dropped_fields == ["name"]
    assert sum("cannot be used in a query" in r.getMessage() for r in caplog.records) == 1


def test_refused_sort_field_in_details_form_also_falls_back(
    emu: EmulatorServer, tmp_path: Path
) -> None:
    emu.set_faults(
        refused_field_form="details_field_path",
        refuse_query_fields={VENDOR: ["audit.modifiedDateTime"]},
    )
    messages = sync_messages(tap_config(emu, tmp_path, objects=[VENDOR]))
    assert len(records(messages, VENDOR_STREAM)) == COUNTS[VENDOR]
    assert "incremental_refused" in final_state(messages)["bookmarks"][VENDOR_STREAM]


# -- 4. logout revokes every session of the user and company -------------------------------------


def _cli(args: list[str], env: dict[str, str], stdin: str | None = None) -> Any:
    return CliRunner().invoke(build_app(), args, env=env, input=stdin)


def test_logout_warns_and_requires_all_sessions(emu: EmulatorServer, tmp_path: Path) -> None:
    env = {
        "INTACCT_BASE_URL": emu.base_url,
        "INTACCT_CLIENT_ID": DEFAULT_CLIENT_ID,
        "INTACCT_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "INTACCT_USERNAME": DEFAULT_USERNAME,
        "INTACCT_TOKEN_STORE": str(tmp_path / "tokens.json"),
    }
    assert _cli(["login", "--client-credentials"], env).exit_code == 0
    other_session = emu.token()["access_token"]  # e.g. a tap run elsewhere, same user

    def other_works() -> bool:
        answer = httpx.post(
            emu.base_url + "/services/core/query",
            json={"object": CUSTOMER, "fields": ["key"], "size": 1},
            headers={"Authorization": f"Bearer {other_session}"},
        )
        return answer.status_code == 200

    refused = _cli(["logout"], env, stdin="")
    assert refused.exit_code == 1
    assert "EVERY session" in refused.output
    assert "--all-sessions" in refused.output
    assert other_works()
    assert DEFAULT_CLIENT_SECRET not in refused.output

    done = _cli(["logout", "--all-sessions"], env)
    assert done.exit_code == 0, done.output
    assert "Logged out" in done.output
    assert not other_works()  # pooled per user and company, as on Intacct


def test_logout_local_only_revokes_nothing(emu: EmulatorServer, tmp_path: Path) -> None:
    env = {
        "INTACCT_BASE_URL": emu.base_url,
        "INTACCT_CLIENT_ID": DEFAULT_CLIENT_ID,
        "INTACCT_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "INTACCT_USERNAME": DEFAULT_USERNAME,
        "INTACCT_TOKEN_STORE": str(tmp_path / "tokens.json"),
    }
    assert _cli(["login", "--client-credentials"], env).exit_code == 0
    other_session = emu.token()["access_token"]
    result = _cli(["logout", "--local-only"], env)
    assert result.exit_code == 0, result.output
    assert "nothing was revoked" in result.output
    assert "Not logged in" in _cli(["token"], env).output
    still = httpx.post(
        emu.base_url + "/services/core/query",
        json={"object": CUSTOMER, "fields": ["key"], "size": 1},
        headers={"Authorization": f"Bearer {other_session}"},
    )
    assert still.status_code == 200


# -- 5. pacing before the wall, and the too-large 429 --------------------------------------------


def test_client_paces_from_rate_limit_headers_instead_of_meeting_429(
    tmp_path: Path, sleeps: Sleeps
) -> None:
    with EmulatorServer(faults={"rate_per_minute": 4}) as server:
        server.company.seed_object(CUSTOMER, 5, 1)
        # The fake sleep stands for the minute passing: the rate window starts afresh.
        sleeps.on_sleep = lambda: server.reset(data=False, tokens=False, stats=False)
        policy = RetryPolicy(max_retries=4, sleep=sleeps, rand=lambda: 0.0)
        with IntacctClient(settings_for(server, tmp_path), retry_policy=policy) as api:
            api.pacer = Pacer(clock=lambda: 1000.0 + sum(sleeps.seconds))  # time = the sleeps
            for _ in range(10):
                api.query({"object": CUSTOMER, "fields": ["key"], "size": 1})
        statuses = server.stats()["responses"]
    assert statuses.get("429", 0) == 0
    assert statuses.get("200", 0) >= 10
    assert sleeps.seconds, "the client never slowed down"
    assert all(s == pytest.approx(15.0) for s in sleeps.seconds)  # 60 s / 4 requests


def test_pacer_spaces_requests_only_when_little_is_left() -> None:
    now = [100.0]
    pacer = Pacer(clock=lambda: now[0])
    pacer.observe({"X-IA-Minute-Rate-Limit": "100", "X-IA-Minute-Rate-Limit-Remaining": "50"})
    assert pacer.reserve(60.0) is None
    pacer.observe({"X-IA-Hour-Rate-Limit": "360", "X-IA-Hour-Rate-Limit-Remaining": "3"})
    assert pacer.reserve(60.0) is None  # the first one goes now and books the next slot
    wait = pacer.reserve(60.0)
    assert isinstance(wait, Wait)
    assert wait.seconds == pytest.approx(10.0)  # 3600 s / 360
    assert "x-ia-hour-rate-limit-remaining 3 of 360" in wait.reason


def test_a_request_too_large_is_recognisable(emu: EmulatorServer, client: IntacctClient) -> None:
    emu.set_faults(too_large_over=2)
    batch = [{"id": f"TL-{i}", "name": f"too large {i}"} for i in range(3)]
    with pytest.raises(IntacctAPIError) as info:
        client.request("POST", "/objects/accounts-payable/vendor", json=batch)
    error = info.value
    assert error.status == 429
    assert error.is_too_large
    assert TOO_LARGE_MESSAGE.split(":", 1)[0] in error.message
    # the same records two at a time go through
    client.request("POST", "/objects/accounts-payable/vendor", json=batch[:2])
    emu.set_faults(too_large_over=None, fail_next=[429])
    policy_free = client.retry_policy.max_retries
    client.retry_policy.max_retries = 0
    try:
        with pytest.raises(IntacctAPIError) as throttled:
            client.query({"object": CUSTOMER, "fields": ["key"], "size": 1})
    finally:
        client.retry_policy.max_retries = policy_free
    assert throttled.value.status == 429
    assert not throttled.value.is_too_large


# -- 6. client credentials: any refused refresh -> one new client-credentials grant ---------------


@pytest.mark.parametrize("refusal", [400, 500])
def test_refused_refresh_under_client_credentials_mints_a_new_token(
    emu: EmulatorServer, client: IntacctClient, refusal: int
) -> None:
    body = {"object": CUSTOMER, "fields": ["key"], "size": 1}
    assert client.query(body).status == 200
    tokens_before = count(emu, TOKEN_PATH)
    emu.set_faults(refresh_failure=refusal, expire_tokens_now=True)
    assert client.query(body).status == 200
    # one refused refresh, then one client-credentials grant
    assert count(emu, TOKEN_PATH) == tokens_before + 2


# -- 7. emulator gaps that hid bugs ----------------------------------------------------------------


def test_create_ap_bill_is_refused_by_default_like_the_recorded_traffic(
    emu: EmulatorServer, client: IntacctClient
) -> None:
    for field in ("action", "createAPBill"):
        with pytest.raises(IntacctAPIError) as info:
            client.query({"object": INVOICE, "fields": ["key", field]})
        assert info.value.error_id == "REST-1106"
        assert info.value.refused_query_field() == field


def test_key_with_a_trailing_space_is_not_key_one(emu: EmulatorServer) -> None:
    headers = emu.auth_headers()
    assert emu.http.get(emu.base_url + f"/objects/{CUSTOMER}/1", headers=headers).is_success
    spaced = emu.http.get(emu.base_url + f"/objects/{CUSTOMER}/1%20", headers=headers)
    assert spaced.status_code == 404
    found = emu.http.post(
        emu.base_url + "/services/core/query",
        json={"object": CUSTOMER, "fields": ["key"], "filters": [{"$eq": {"key": "1 "}}]},
        headers=headers,
    )
    assert found.json()["ia::result"] == []


@pytest.mark.parametrize("order", ["numeric", "string"])
def test_key_only_keyset_reads_everything_under_either_key_order(
    emu: EmulatorServer, client: IntacctClient, order: str
) -> None:
    emu.set_faults(key_sort=order, key_compare=order)
    sorted_keys = emu.http.post(
        emu.base_url + "/services/core/query",
        json={"object": CONTACT, "fields": ["key"], "orderBy": [{"key": "asc"}], "size": 12},
        headers=emu.auth_headers(),
    ).json()["ia::result"]
    first = [row["key"] for row in sorted_keys]
    if order == "string":
        assert first[:3] == ["1", "10", "100"]
    else:
        assert first[:3] == ["1", "2", "3"]
    pager = QueryPager(client, CONTACT, ["key", "id"], page_size=7, timestamp_field=None)
    keys = [row["key"] for page in pager for row in page]
    assert len(keys) == len(set(keys)) == COUNTS[CONTACT]
    assert pager.calls == -(-COUNTS[CONTACT] // 7)


@pytest.mark.parametrize(
    ("sort", "compare", "failure"),
    [("numeric", "string", "error"), ("string", "numeric", "warning")],
    ids=["numeric_sort_text_compare", "text_sort_numeric_compare"],
)
def test_key_only_read_never_ends_silently_when_sort_and_compare_disagree(
    emu: EmulatorServer,
    client: IntacctClient,
    caplog: pytest.LogCaptureFixture,
    sort: str,
    compare: str,
    failure: str,
) -> None:
    emu.set_faults(key_sort=sort, key_compare=compare)
    pager = QueryPager(client, CONTACT, ["key"], page_size=7, timestamp_field=None)
    if failure == "error":
        with pytest.raises(PagingLoopError, match="neither in numeric nor in text order"):
            for _page in pager:
                pass
        return
    keys = [row["key"] for page in pager for row in page]
    assert len(keys) < COUNTS[CONTACT]  # what the mismatch costs: rows skipped...
    said = [r.getMessage() for r in caplog.records if "intacct doctor" in r.getMessage()]
    assert len(said) == 1  # ...and said, not silent
    assert f"but the first page announced {COUNTS[CONTACT]}" in said[0]


def test_emulator_command_line_sets_fidelity_switches_at_start() -> None:
    from intacct_emulator.cli import build_parser, config_from_args

    args = build_parser().parse_args(
        [
            "serve",
            "--fault",
            "token_error_status=400",
            "--fault",
            'entity_headers=["X-IA-API-ParamEntity"]',
            "--fault",
            "key_compare=string",
        ]
    )
    config = config_from_args(args)
    with EmulatorServer(config) as server:
        knobs = server.set_faults()
        assert knobs["token_error_status"] == 400
        assert knobs["entity_headers"] == ["X-IA-API-ParamEntity"]
        assert knobs["key_compare"] == "string"
        server.reset()
        assert server.set_faults()["key_compare"] == "string"  # start-up knobs survive a reset
