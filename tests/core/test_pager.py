"""QueryPager against the emulator over loopback HTTP: call counts, REST-1106, keyset safety."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intacct_api.client import IntacctClient
from intacct_api.pager import QueryPager
from intacct_api.settings import ConnectionSettings
from intacct_emulator.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_USERNAME
from intacct_emulator.testing import EmulatorServer

CUSTOMER = "accounts-receivable/customer"
CONTACT = "company-config/contact"  # no audit.modifiedDateTime: keyset on key alone
N_CUSTOMERS = 900
N_CONTACTS = 250
FIELDS = ["key", "id", "name", "totalDue", "audit.modifiedDateTime"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer() as server:
        server.company.seed_object(CUSTOMER, N_CUSTOMERS, 7)
        server.company.seed_object(CONTACT, N_CONTACTS, 7)
        yield server


@pytest.fixture
def client(emulator: EmulatorServer, tmp_path: Path) -> Iterator[IntacctClient]:
    emulator.reset(data=False)
    settings = ConnectionSettings(
        base_url=emulator.base_url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        username=DEFAULT_USERNAME,
        token_store=str(tmp_path / "tokens.json"),
    )
    with IntacctClient(settings) as api:
        yield api


def query_calls(emulator: EmulatorServer) -> int:
    return emulator.requests().get("POST /services/core/query", 0)


def all_rows(pager: QueryPager) -> list[dict[str, Any]]:
    return [row for page in pager for row in page]


@pytest.mark.parametrize("page_size", [100, 300, 450, 1000])
def test_full_read_costs_exactly_ceil_n_over_page_size_calls(
    emulator: EmulatorServer, client: IntacctClient, page_size: int
) -> None:
    pager = QueryPager(client, CUSTOMER, FIELDS, page_size=page_size)
    rows = all_rows(pager)
    expected_calls = math.ceil(N_CUSTOMERS / page_size)
    assert len(rows) == N_CUSTOMERS
    assert len({r["key"] for r in rows}) == N_CUSTOMERS
    assert pager.calls == pager.pages == expected_calls
    assert query_calls(emulator) == expected_calls  # 900/300 and 900/450: no trailing empty call
    stamps = [(r["audit.modifiedDateTime"], int(r["key"])) for r in rows]
    assert stamps == sorted(stamps)


def test_pages_arrive_one_by_one(emulator: EmulatorServer, client: IntacctClient) -> None:
    pages = iter(QueryPager(client, CUSTOMER, ["key"], page_size=200))
    first = next(pages)
    assert len(first) == 200
    assert query_calls(emulator) == 1  # nothing fetched ahead: memory stays one page


def test_keyset_on_key_alone_for_objects_without_timestamp(
    emulator: EmulatorServer, client: IntacctClient
) -> None:
    pager = QueryPager(client, CONTACT, ["key", "id"], page_size=100, timestamp_field=None)
    rows = all_rows(pager)
    keys = [int(r["key"]) for r in rows]
    assert len(keys) == N_CONTACTS
    assert keys == sorted(set(keys))
    assert query_calls(emulator) == math.ceil(N_CONTACTS / 100)


def test_caller_filters_and_expression_are_kept_across_pages(
    emulator: EmulatorServer, client: IntacctClient
) -> None:
    filters = [{"$eq": {"status": "active"}}, {"$lt": {"key": "50"}}, {"$gt": {"key": "800"}}]
    expression = "1 and (2 or 3)"
    reference = all_rows(
        QueryPager(client, CUSTOMER, [*FIELDS, "status"], filters=filters,
                   filter_expression=expression, page_size=4000)
    )  # fmt: skip
    paged = all_rows(
        QueryPager(client, CUSTOMER, [*FIELDS, "status"], filters=filters,
                   filter_expression=expression, page_size=7)
    )  # fmt: skip
    assert len(reference) > 20
    assert all(r["status"] == "active" for r in paged)
    assert all(int(r["key"]) < 50 or int(r["key"]) > 800 for r in paged)
    assert paged == reference


def test_refused_field_is_dropped_with_one_warning(
    emulator: EmulatorServer, client: IntacctClient, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(refuse_query_fields={CUSTOMER: ["totalDue"]})
    pager = QueryPager(client, CUSTOMER, FIELDS, page_size=300)
    with caplog.at_level(logging.WARNING, logger="intacct_api.pager"):
        rows = all_rows(pager)
    assert len(rows) == N_CUSTOMERS
    assert pager.dropped_fields == ["totalDue"]
    assert "totalDue" not in pager.fields
    assert all("totalDue" not in r for r in rows)
    warnings = [r for r in caplog.records if r.name == "intacct_api.pager"]
    assert len(warnings) == 1
    assert CUSTOMER in warnings[0].getMessage()
    assert "totalDue" in warnings[0].getMessage()
    # one refused call, then ceil(900/300) successful pages
    assert pager.calls == 4
    assert query_calls(emulator) == 4


def test_refused_key_field_is_not_silently_dropped(
    emulator: EmulatorServer, client: IntacctClient
) -> None:
    from intacct_api.errors import IntacctAPIError

    emulator.set_faults(refuse_query_fields={CUSTOMER: ["key"]})
    with pytest.raises(IntacctAPIError) as info:
        all_rows(QueryPager(client, CUSTOMER, FIELDS, page_size=300))
    assert info.value.refused_query_field() == "key"


def _mutate_between_pages(emulator: EmulatorServer, first_page: list[dict[str, Any]]) -> dict:
    """Touch rows ahead of the cursor and behind it, insert new rows. Returns what changed."""
    company = emulator.company
    seen = [r["key"] for r in first_page]
    ahead = [str(k) for k in range(1, N_CUSTOMERS + 1) if str(k) not in set(seen)][:5]
    for key in ahead:
        company.touch(CUSTOMER, key, name=f"moved {key}")
    company.touch(CUSTOMER, seen[0], name="changed behind the cursor")
    inserted = [
        company.insert(CUSTOMER, {"id": f"NEW-{i}", "name": f"inserted {i}"})["key"]
        for i in range(3)
    ]
    return {"ahead": ahead, "behind": seen[0], "inserted": inserted}


def test_keyset_paging_loses_nothing_when_rows_change_between_pages(tmp_path: Path) -> None:
    with EmulatorServer() as server:
        server.company.seed_object(CUSTOMER, 600, 3)
        settings = ConnectionSettings(
            base_url=server.base_url,
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            username=DEFAULT_USERNAME,
            token_store=str(tmp_path / "tokens2.json"),
        )
        with IntacctClient(settings) as api:
            before = {r["key"] for r in all_rows(QueryPager(api, CUSTOMER, ["key"]))}
            pages = iter(QueryPager(api, CUSTOMER, FIELDS, page_size=100))
            first = next(pages)
            changed = _mutate_between_pages(server, first)
            rows = first + [row for page in pages for row in page]
    emitted = {r["key"] for r in rows}
    assert before <= emitted  # every record present for the whole run was read
    assert set(changed["inserted"]) <= emitted
    names = {r["key"]: r["name"] for r in rows}  # the last version of each key wins
    for key in changed["ahead"]:
        assert names[key] == f"moved {key}"
    assert names[changed["behind"]] == "changed behind the cursor"  # re-read, newest version


def test_offset_paging_would_have_skipped_rows_in_the_same_scenario(tmp_path: Path) -> None:
    """The reason for keyset paging, shown on the emulator: offsets skip shifted rows."""
    with EmulatorServer() as server:
        server.company.seed_object(CUSTOMER, 600, 3)
        settings = ConnectionSettings(
            base_url=server.base_url,
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            username=DEFAULT_USERNAME,
            token_store=str(tmp_path / "tokens3.json"),
        )
        with IntacctClient(settings) as api:
            before = {r["key"] for r in all_rows(QueryPager(api, CUSTOMER, ["key"]))}
            order = [{"audit.modifiedDateTime": "asc"}, {"key": "asc"}]
            pager = QueryPager(api, CUSTOMER, FIELDS, order_by=order, page_size=100)
            assert pager.mode == "offset"
            pages = iter(pager)
            first = next(pages)
            _mutate_between_pages(server, first)
            rows = first + [row for page in pages for row in page]
    assert before - {r["key"] for r in rows}  # offset paging lost records


def test_offset_mode_follows_meta_next_in_the_users_order(
    emulator: EmulatorServer, client: IntacctClient
) -> None:
    pager = QueryPager(
        client, CUSTOMER, ["key", "name"], order_by=[{"name": "desc"}], page_size=250
    )
    rows = all_rows(pager)
    assert len(rows) == N_CUSTOMERS
    assert [r["name"] for r in rows] == sorted((r["name"] for r in rows), reverse=True)
    assert query_calls(emulator) == math.ceil(N_CUSTOMERS / 250)


class _NullsServer:
    """A tiny in-memory query service for the null-timestamp branches (no emulator row can
    have a null modified time). It evaluates the pager's filters with the emulator's own
    operator and filterExpression code, sorting nulls first or last as told."""

    def __init__(self, rows: list[dict[str, Any]], *, nulls_last: bool) -> None:
        self.rows = rows
        self.nulls_last = nulls_last
        self.calls = 0

    def query(self, body: dict[str, Any], *, entity: Any = None) -> Any:
        from intacct_emulator.filters import parse_expression, predicate

        self.calls += 1
        filters = body.get("filters", [])
        checks = []
        for item in filters:
            ((op, cond),) = item.items()
            ((name, target),) = cond.items()
            checks.append((name, predicate(op, target, lambda v: v)))
        combine = parse_expression(
            body.get("filterExpression") or " and ".join(str(i + 1) for i in range(len(checks))),
            len(checks),
        ) if checks else (lambda _results: True)  # fmt: skip
        matching = [r for r in self.rows if combine([c(r.get(n)) for n, c in checks])]

        def order(row: dict[str, Any]) -> tuple[Any, ...]:
            ts = row["ts"]
            null_rank = (ts is None) if self.nulls_last else (ts is not None)
            return (null_rank, ts or "", row["key"])

        matching.sort(key=order)
        size = body["size"]
        page = matching[:size]
        result = {
            "ia::result": page,
            "ia::meta": {
                "next": size + 1 if len(matching) > size else None,
                "totalCount": len(matching),
            },
        }

        class _Answer:
            def json(self) -> Any:
                return result

        return _Answer()


@pytest.mark.parametrize("nulls_last", [False, True])
def test_null_timestamps_are_paged_whichever_side_they_sort(nulls_last: bool) -> None:
    rows: list[dict[str, Any]] = [
        {"key": f"{k:04d}", "ts": None if k % 3 == 0 else f"2026-01-{k % 7 + 1:02d}"}
        for k in range(1, 61)
    ]
    server = _NullsServer(rows, nulls_last=nulls_last)
    pager = QueryPager(server, "x/y", ["key"], page_size=4, timestamp_field="ts")
    read = [r["key"] for page in pager for r in page]
    assert sorted(read) == sorted(r["key"] for r in rows)
    assert len(read) == len(rows)
    # nulls first: exact page count; nulls last: the null rows are fetched by their own pages
    nulls = sum(1 for r in rows if r["ts"] is None)
    expected = (
        math.ceil((len(rows) - nulls) / 4) + math.ceil(nulls / 4)
        if nulls_last
        else math.ceil(len(rows) / 4)
    )
    assert server.calls == expected


def test_cli_query_and_call_use_the_same_pager_and_client(
    emulator: EmulatorServer, tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from intacct_api.cli.app import build_app

    env = {
        "INTACCT_BASE_URL": emulator.base_url,
        "INTACCT_CLIENT_ID": DEFAULT_CLIENT_ID,
        "INTACCT_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "INTACCT_USERNAME": DEFAULT_USERNAME,
        "INTACCT_TOKEN_STORE": str(tmp_path / "cli-tokens.json"),
    }
    emulator.reset(data=False)
    runner = CliRunner()
    result = runner.invoke(
        build_app(),
        ["query", CUSTOMER, "--fields", "key,name,audit.modifiedDateTime",
         "--filter", '{"$lt": {"key": "120"}}', "--page-size", "50", "--limit", "100"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 100
    assert set(lines[0]) == {"key", "name", "audit"}
    assert all(int(r["key"]) < 120 for r in lines)
    assert query_calls(emulator) == 2

    result = runner.invoke(
        build_app(), ["call", "get-accounts-receivable-customer-key", "-p", "key=5"], env=env
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ia::result"]["key"] == "5"


# -- prefetch -------------------------------------------------------------------------------------


def _prefetch_threads() -> list[Any]:
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("intacct-prefetch")]


class _CountingClient:
    """Wraps the real client: counts query calls, can fail the n-th, notes pages in flight."""

    def __init__(self, inner: IntacctClient, *, fail_on: int | None = None) -> None:
        import threading

        self.inner = inner
        self.calls = 0
        self.fail_on = fail_on
        self.second_started = threading.Event()

    def query(self, body: dict[str, Any], *, entity: Any = None) -> Any:
        from intacct_api.errors import IntacctAPIError

        self.calls += 1
        if self.calls == 2:
            self.second_started.set()
        if self.calls == self.fail_on:
            raise IntacctAPIError(500, f"boom on call {self.calls}", code="X-1")
        return self.inner.query(body, entity=entity)


def test_prefetched_pages_equal_plain_pages_at_the_same_cost(
    emulator: EmulatorServer, client: IntacctClient
) -> None:
    plain = [list(page) for page in QueryPager(client, CUSTOMER, FIELDS, page_size=200)]
    emulator.reset(data=False, tokens=False)
    pager = QueryPager(client, CUSTOMER, FIELDS, page_size=200)
    prefetched = [(list(page), dropped) for page, dropped in pager.prefetched()]
    assert [page for page, _ in prefetched] == plain
    assert all(dropped == () for _, dropped in prefetched)
    assert pager.calls == pager.pages == math.ceil(N_CUSTOMERS / 200)
    assert query_calls(emulator) == math.ceil(N_CUSTOMERS / 200)
    assert not _prefetch_threads()


def test_prefetch_is_never_more_than_one_page_ahead(client: IntacctClient) -> None:
    counting = _CountingClient(client)
    pager = QueryPager(counting, CUSTOMER, ["key"], page_size=100)
    received = 0
    for page, _ in pager.prefetched():
        received += 1
        assert counting.calls <= received + 1
        page.clear()  # the caller owns the page: emptying it must not disturb paging
    assert received == counting.calls == math.ceil(N_CUSTOMERS / 100)


def test_prefetch_errors_arrive_in_order_after_the_pages_before_them(
    client: IntacctClient,
) -> None:
    from intacct_api.errors import IntacctAPIError

    counting = _CountingClient(client, fail_on=3)
    pager = QueryPager(counting, CUSTOMER, ["key"], page_size=100)
    pages = pager.prefetched()
    first, second = next(pages)[0], next(pages)[0]
    assert len(first) == len(second) == 100
    with pytest.raises(IntacctAPIError, match="boom on call 3"):
        next(pages)
    assert counting.calls == 3
    assert not _prefetch_threads()


def test_closing_a_prefetching_read_early_leaves_no_thread(client: IntacctClient) -> None:
    counting = _CountingClient(client)
    pager = QueryPager(counting, CUSTOMER, ["key"], page_size=100)
    pages = pager.prefetched()
    next(pages)
    assert counting.second_started.wait(timeout=120)  # page 2 is in flight (or already here)
    pages.close()  # what the SDK's record limit (--test) does to the tap's generator
    assert not _prefetch_threads()
    # the request in flight was waited for; nothing was asked after it
    assert counting.calls == pager.calls == pager.pages == 2


def test_prefetch_drops_a_refused_field_with_one_warning(
    emulator: EmulatorServer, client: IntacctClient, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(refuse_query_fields={CUSTOMER: ["totalDue"]})
    pager = QueryPager(client, CUSTOMER, FIELDS, page_size=300)
    with caplog.at_level(logging.WARNING, logger="intacct_api.pager"):
        pages = list(pager.prefetched())
    assert sum(len(page) for page, _ in pages) == N_CUSTOMERS
    assert all(dropped == ("totalDue",) for _, dropped in pages)
    assert all("totalDue" not in row for page, _ in pages for row in page)
    warnings = [r for r in caplog.records if r.name == "intacct_api.pager"]
    assert len(warnings) == 1
    assert pager.calls == 4
    assert query_calls(emulator) == 4


def test_prefetched_keyset_paging_loses_nothing_when_rows_change(tmp_path: Path) -> None:
    with EmulatorServer() as server:
        server.company.seed_object(CUSTOMER, 600, 3)
        settings = ConnectionSettings(
            base_url=server.base_url,
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            username=DEFAULT_USERNAME,
            token_store=str(tmp_path / "tokens4.json"),
        )
        with IntacctClient(settings) as api:
            before = {r["key"] for r in all_rows(QueryPager(api, CUSTOMER, ["key"]))}
            pages = QueryPager(api, CUSTOMER, FIELDS, page_size=100).prefetched()
            first = list(next(pages)[0])  # page 2 is (being) fetched while rows change
            changed = _mutate_between_pages(server, first)
            rows = first + [row for page, _ in pages for row in page]
    emitted = {r["key"] for r in rows}
    assert before <= emitted
    assert set(changed["inserted"]) <= emitted
    names = {r["key"]: r["name"] for r in rows}
    for key in changed["ahead"]:
        assert names[key] == f"moved {key}"
    assert names[changed["behind"]] == "changed behind the cursor"


def test_typed_rows_read_the_same_rows_at_the_same_cost(
    emulator: EmulatorServer, client: IntacctClient
) -> None:
    """Struct rows (the tap's hot path) hold exactly what dict rows hold, page by page."""
    emulator.set_faults(refuse_query_fields={CUSTOMER: ["totalDue"]})
    plain = QueryPager(client, CUSTOMER, FIELDS, page_size=300)
    typed = QueryPager(client, CUSTOMER, FIELDS, page_size=300, typed_rows=True)
    plain_pages, typed_pages = list(plain), list(typed)
    assert typed.dropped_fields == plain.dropped_fields == ["totalDue"]
    assert (typed.calls, typed.pages) == (plain.calls, plain.pages) == (4, 3)
    assert [len(p) for p in typed_pages] == [len(p) for p in plain_pages]
    wanted = [f for f in FIELDS if f != "totalDue"]
    for plain_row, typed_row in zip(
        (r for p in plain_pages for r in p), (r for p in typed_pages for r in p), strict=True
    ):
        assert not isinstance(typed_row, dict)
        assert {f: typed_row[f] for f in wanted} == {f: plain_row.get(f) for f in wanted}


class _OddAnswer:
    """An answer whose ``ia::result`` is not a list of rows: the typed decoder cannot hold it."""

    content = b'{"ia::result": {"unexpected": true}, "ia::meta": {"next": null}}'

    def json(self) -> Any:
        return {"ia::result": {"unexpected": True}, "ia::meta": {"next": None}}


class _OddClient:
    def query(self, body: dict[str, Any], *, entity: Any = None) -> _OddAnswer:
        return _OddAnswer()


def test_typed_rows_fall_back_to_the_dict_path_on_an_odd_answer() -> None:
    pager = QueryPager(_OddClient(), CUSTOMER, FIELDS, typed_rows=True)
    assert list(pager) == []  # read as before: no rows, no crash
    assert pager.calls == 1
