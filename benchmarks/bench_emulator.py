"""Emulator benchmark: how fast the server answers the requests the tap and the target make.

The tap and target ratios are only meaningful if the emulator is never what limits a run. This
script measures, with one sequential keep-alive client (the tap's access pattern), how many
4,000-record query pages per second the emulator serves for each page *shape* a sync uses:

* ``first page``: the pager's keyset body without a cursor (page 1 of a full sync);
* ``keyset page``: the pager's continuation body, cursor in the middle of the table
  (``modified >= t AND key NOT IN (keys emitted at t)``): every later page of a full sync;
* ``keyset page, OR fallback``: the pager's form after a mass update gave more than 500 rows
  one timestamp (``modified > t OR (modified = t AND key > k)`` with ``filterExpression``);
* ``offset page``: ``start`` in the middle of the table, ordered by key (offset paging);

and 500-record batch creates per second (the target's request) on an empty in-memory company.
It then divides the records/s of each by the tap's (or target's) records/s from the latest
`bench_tap.json` / `bench_target.json`, if present: the emulator should be several times faster.

    .venv/bin/python -m benchmarks.bench_emulator --n 100000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import msgspec

from benchmarks import common
from benchmarks.common import Emulator, fmt

TS = "audit.modifiedDateTime"


def query_fields(object_name: str) -> list[str]:
    """The fields a full-selection sync requests: the record schema's queryable leaves."""
    from intacct_api.records import field_paths
    from intacct_api.spec import default_registry

    schema = default_registry().object(object_name).record_schema()
    fields = field_paths(schema)
    return fields + [f for f in (TS, "key") if f not in fields]


def timed(call: Callable[[], int], *, seconds: float, max_calls: int) -> dict[str, float]:
    """Repeat ``call`` (returns records moved) for about ``seconds``; per-call latency stats."""
    latencies: list[float] = []
    records = 0
    deadline = time.perf_counter() + seconds
    while len(latencies) < max_calls and (len(latencies) < 3 or time.perf_counter() < deadline):
        started = time.perf_counter()
        records += call()
        latencies.append(time.perf_counter() - started)
    total = sum(latencies)
    return {
        "calls": len(latencies),
        "req_per_s": len(latencies) / total,
        "records_per_s": records / total,
        "median_ms": statistics.median(latencies) * 1000,
        "max_ms": max(latencies) * 1000,
        "records_per_call": records / len(latencies),
    }


class _PageRows(msgspec.Struct):
    """A query page's rows as raw JSON slices: counted without building Python objects."""

    rows: list[msgspec.Raw] = msgspec.field(name="ia::result")


class Client:
    """A bearer-authenticated keep-alive client that checks every answer."""

    def __init__(self, emulator: Emulator) -> None:
        self.base = emulator.base_url
        self.http = httpx.Client(timeout=600.0)
        self.headers = {
            "Authorization": f"Bearer {emulator.token()}",
            "Content-Type": "application/json",
        }
        self.decoder = msgspec.json.Decoder()

    def post(self, path: str, body: Any, ok: Sequence[int] = (200,)) -> dict[str, Any]:
        """POST a JSON body and return the decoded answer (fails loudly on other statuses)."""
        resp = self.http.post(
            self.base + path, content=msgspec.json.encode(body), headers=self.headers
        )
        if resp.status_code not in ok:
            raise SystemExit(f"{path}: {resp.status_code} {resp.text[:800]}")
        data: dict[str, Any] = self.decoder.decode(resp.content)
        return data

    def query(self, body: dict[str, Any]) -> int:
        """One query page, timed to its last byte; returns the number of rows it carried.

        The rows are not turned into Python objects here: that is the client's work (the tap
        does it and is measured for it), not the emulator's; they are only counted.
        """
        resp = self.http.post(
            self.base + "/services/core/query",
            content=msgspec.json.encode(body),
            headers=self.headers,
        )
        if resp.status_code != 200:
            raise SystemExit(f"query: {resp.status_code} {resp.text[:800]}")
        return len(msgspec.json.decode(resp.content, type=_PageRows).rows)


def keyset_body(
    client: Client,
    object_name: str,
    fields: list[str],
    position: int,
    size: int,
    *,
    or_form: bool = False,
) -> dict[str, Any]:
    """The pager's continuation body with its cursor on the row at ``position`` (1-based).

    Default: the AND-only form `intacct_api.pager` sends normally (`$gte` timestamp, `$notIn`
    the keys already emitted at it). ``or_form``: its fallback after a mass update (more than
    500 rows with one timestamp), `modified > t OR (modified = t AND key > k)`.
    """
    order = [{TS: "asc"}, {"key": "asc"}]
    probe_body = {"object": object_name, "fields": [TS, "key"], "start": position, "size": 1}
    probe_body["orderBy"] = order
    probe = client.post("/services/core/query", probe_body)["ia::result"][0]
    body: dict[str, Any] = {
        "object": object_name,
        "fields": fields,
        "start": 1,
        "size": size,
        "orderBy": order,
    }
    if or_form:
        body["filters"] = [
            {"$gt": {TS: probe[TS]}},
            {"$eq": {TS: probe[TS]}},
            {"$gt": {"key": probe["key"]}},
        ]
        body["filterExpression"] = "(1 or (2 and 3))"
    else:
        body["filters"] = [{"$gte": {TS: probe[TS]}}, {"$notIn": {"key": [probe["key"]]}}]
    return body


def estimate_keyset_sync(client: Client, object_name: str, n: int, size: int) -> dict[str, float]:
    """Predict the emulator's share of a keyset full sync from two timed pages.

    A continuation page costs ``a + b * remaining_rows`` when the server filters in Python
    after reading every remaining row, and about ``a`` when it pushes the cursor into SQL.
    Timing one page with few rows left and one with 10% left gives both terms; the sum over
    ceil(n/size) pages is then ``pages * a + b * n * pages / 2``. Used to refuse a run that
    would take hours instead of starting it on a shared machine.
    """
    fields = query_fields(object_name)
    pages = common.min_calls(n, size)
    near = min(n, 2 * size)
    far = min(n, max(near + size, n // 10))
    timings = []
    for remaining in (near, far):
        body = keyset_body(client, object_name, fields, max(1, n - remaining), size)
        started = time.perf_counter()
        client.query(body)
        timings.append((remaining, time.perf_counter() - started))
    (r1, t1), (r2, t2) = timings
    slope = max(0.0, (t2 - t1) / (r2 - r1)) if r2 > r1 else 0.0
    fixed = max(0.0, t1 - slope * r1)
    return {
        "pages": pages,
        "page_s_few_rows_left": t1,
        "page_s_10pct_left": t2,
        "seconds_per_remaining_row": slope,
        "estimated_sync_s": pages * fixed + slope * n * pages / 2,
    }


def query_scenarios(
    client: Client, object_name: str, n: int, size: int
) -> dict[str, Callable[[], int]]:
    """The page shapes of a sync, built like `intacct_api.pager.QueryPager` builds them."""
    fields = query_fields(object_name)
    order: list[dict[str, str]] = [{TS: "asc"}, {"key": "asc"}]
    first = {"object": object_name, "fields": fields, "start": 1, "size": size, "orderBy": order}
    # cursor in the middle of the table: the row at position n/2 in (modified, key) order
    keyset = keyset_body(client, object_name, fields, max(1, n // 2), size)
    keyset_or = keyset_body(client, object_name, fields, max(1, n // 2), size, or_form=True)
    offset = {
        "object": object_name,
        "fields": fields,
        "start": max(1, n // 2),
        "size": size,
        "orderBy": [{"key": "asc"}],
    }
    return {
        "first page (keyset, no cursor)": lambda: client.query(first),
        "keyset page (cursor mid-table)": lambda: client.query(keyset),
        "keyset page, OR fallback (mid-table)": lambda: client.query(keyset_or),
        "offset page (start mid-table)": lambda: client.query(offset),
    }


def create_scenario(client: Client, object_name: str, batch: int) -> Callable[[], int]:
    """500-record batch creates with fresh ids each call (the target's request)."""
    from benchmarks.bench_target import new_record

    counter = iter(range(10**9))
    path = f"/objects/{object_name}"

    def call() -> int:
        records = [new_record(next(counter)) for _ in range(batch)]
        result = client.post(path, records, ok=(200, 201, 207)).get("ia::result") or []
        errors = [r for r in result if isinstance(r, dict) and "ia::error" in r]
        if errors:
            raise SystemExit(f"batch create refused: {errors[0]}")
        return len(records)

    return call


def latest(name: str) -> dict[str, Any] | None:
    """A previous benchmark's stored result, if any."""
    path = common.RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: Sequence[str] | None = None) -> int:
    """Start the emulator(s), time each request shape, print and store the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records in the seeded table")
    ap.add_argument("--object", default=common.DEFAULT_OBJECT)
    ap.add_argument("--page-size", type=int, default=common.QUERY_PAGE)
    ap.add_argument("--seconds", type=float, default=8.0, help="per scenario (at least 3 calls)")
    ap.add_argument("--max-calls", type=int, default=200)
    args = ap.parse_args(argv)

    results: dict[str, dict[str, float]] = {}
    db = common.seeded_db(args.object, args.n)
    with Emulator(db=db) as emulator:
        client = Client(emulator)
        estimate = estimate_keyset_sync(client, args.object, args.n, args.page_size)
        for name, call in query_scenarios(client, args.object, args.n, args.page_size).items():
            before = emulator.cpu_seconds()
            results[name] = timed(call, seconds=args.seconds, max_calls=args.max_calls)
            results[name]["emulator_cpu_s"] = emulator.cpu_seconds() - before
        emulator_rss = emulator.peak_rss_mb()
    with Emulator() as emulator:
        client = Client(emulator)
        name = f"batch create ({common.WRITE_BATCH} records, empty company)"
        results[name] = timed(
            create_scenario(client, args.object, common.WRITE_BATCH),
            seconds=args.seconds,
            max_calls=args.max_calls,
        )

    tap = latest("bench_tap")
    target = latest("bench_target")
    tap_rate = tap["best"]["tap"]["rate"] if tap else None
    target_rate = target["best"]["target"]["rate"] if target else None
    rows = []
    for name, r in results.items():
        client_rate = target_rate if name.startswith("batch") else tap_rate
        headroom = r["records_per_s"] / client_rate if client_rate else None
        rows.append(
            [
                name,
                fmt(r["calls"]),
                fmt(r["req_per_s"], ".2f"),
                fmt(r["records_per_s"]),
                fmt(r["median_ms"], ".1f"),
                fmt(r["max_ms"], ".1f"),
                fmt(headroom, ".1f") + ("x" if headroom else ""),
            ]
        )
    common.print_table(
        f"emulator: {args.object}, {args.n:,} records seeded, page size {args.page_size}",
        ["request", "calls", "req/s", "records/s", "median ms", "max ms", "vs connector"],
        rows,
    )
    print(
        "\n'vs connector' = emulator records/s divided by the connector's records/s from the "
        "latest bench_tap.json (queries) / bench_target.json (creates); n/a if not run yet."
    )
    print(
        f"\nkeyset full sync of {args.n:,}: the emulator needs about "
        f"{estimate['estimated_sync_s']:.0f} s of its own time "
        f"({estimate['page_s_few_rows_left'] * 1000:.0f} ms per page with few rows left, "
        f"{estimate['page_s_10pct_left'] * 1000:.0f} ms with 10% left, "
        f"{estimate['seconds_per_remaining_row'] * 1e6:.2f} us per remaining row)"
    )
    if tap and tap.get("n") != args.n:
        print(f"(bench_tap.json was measured at n={tap.get('n'):,}, this run at n={args.n:,})")
    common.write_results(
        "bench_emulator",
        {
            "n": args.n,
            "object": args.object,
            "page_size": args.page_size,
            "scenarios": results,
            "emulator_peak_rss_mb": emulator_rss,
            "keyset_sync_estimate": estimate,
            "tap_rate": tap_rate,
            "target_rate": target_rate,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
