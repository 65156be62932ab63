"""Parallel partitioned full sync: `tap-intacct` with `parallel_slices: 4` vs the sequential read.

Issue #15's bar: at 2 s per query call (a realistic time for a 4,000-row page of a wide object)
a full sync in 4 slices finishes in at most 1/3 of the sequential time, with the same records.
One emulator (seeded database, cached) serves both runs, each its own `tap-intacct` process
with stdout drained by a counting sink, with the emulator's `latency_ms` on for every API
request of the timed runs (the emulator cannot restrict it to query calls; the tap's other
API calls are none here: the token endpoint is not delayed, the catalog is discovered first).

Why the default is 80,000 records and not fewer: the sequential read costs ceil(N/4000) calls
in a row; the sliced read costs one round of range queries (two size-1 queries at once, which
the emulator delays as much as a full page) plus ceil(N/4/4000) rounds. At 48,000 that is
4 rounds against 12, exactly 1/3 before any fixed cost; at 80,000, 6 against 20 (0.30).

    .venv/bin/python -m benchmarks.bench_partitioned                 # 80,000 rows, 2 s, 4 slices
    .venv/bin/python -m benchmarks.bench_partitioned --n 48000 --latency-ms 2000
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import common
from benchmarks.bench_tap import discover, tap_config
from benchmarks.common import Emulator, RunResult, fmt

RATIO_TARGET = 1 / 3
"""Issue #15: the 4-slice full sync takes at most 1/3 of the sequential one."""
_SYNC_DURATION = re.compile(r'"metric":"sync_duration","value":([0-9.]+)')


def sync_seconds(result: RunResult) -> float | None:
    """The stream's own sync time (the SDK's ``sync_duration`` metric, from the first query to
    the last record): the process's wall time minus start-up, token and catalog reading."""
    found = _SYNC_DURATION.findall(result.stderr_tail)
    return float(found[-1]) if found else None


def run_sync(
    label: str,
    emulator: Emulator,
    config: Path,
    catalog: Path,
    *,
    latency_ms: float,
    object_name: str,
    timeout: float,
) -> RunResult:
    """One measured full sync (no state) with its query-call count from the emulator."""
    cmd = [common.script("tap-intacct"), "--config", str(config), "--catalog", str(catalog)]
    with emulator.latency(latency_ms):
        before = emulator.stats()
        result = common.run_child(
            label, cmd, env=common.child_env(), timeout=timeout, emulator=emulator
        )
        after = emulator.stats()
    delta = common.stats_delta(before, after)
    result.calls = common.count_calls(delta, kind="query", object_name=object_name)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Seed, start the emulator, run the sequential and the sliced sync, print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80_000, help="records to seed and sync")
    ap.add_argument("--object", default=common.DEFAULT_OBJECT)
    ap.add_argument("--page-size", type=int, default=common.QUERY_PAGE)
    ap.add_argument("--slices", type=int, default=4, help="parallel_slices of the sliced run")
    ap.add_argument(
        "--latency-ms", type=float, default=2000.0, help="emulator latency per API request"
    )
    ap.add_argument("--timeout", type=float, default=600.0, help="per child process, seconds")
    ap.add_argument("--fresh-seed", action="store_true", help="rebuild the cached database")
    args = ap.parse_args(argv)

    stream = common.stream_name(args.object)
    db = common.seeded_db(args.object, args.n, fresh=args.fresh_seed)
    with (
        tempfile.TemporaryDirectory(prefix="bench-partitioned-") as tmp,
        Emulator(db=db) as emulator,
    ):
        workdir = Path(tmp)
        sequential_config = tap_config(emulator, args.object, args.page_size, workdir)
        catalog, _ = discover(sequential_config, stream, workdir)
        sliced_config = workdir / "tap-config-sliced.json"
        settings = json.loads(sequential_config.read_text())
        settings["parallel_slices"] = args.slices
        settings["max_concurrency"] = max(args.slices, 4)
        settings["token_store"] = str(workdir / "tokens-sliced.json")
        sliced_config.write_text(json.dumps(settings, indent=2))

        kw: dict[str, Any] = {
            "latency_ms": args.latency_ms,
            "object_name": args.object,
            "timeout": args.timeout,
        }
        sequential = run_sync("sequential", emulator, sequential_config, catalog, **kw)
        sliced = run_sync(f"{args.slices} slices", emulator, sliced_config, catalog, **kw)

    ratio = sliced.wall_s / sequential.wall_s if sequential.wall_s else float("nan")
    seq_sync, sliced_sync = sync_seconds(sequential), sync_seconds(sliced)
    sync_ratio = sliced_sync / seq_sync if seq_sync and sliced_sync else float("nan")
    same = sequential.records == sliced.records == args.n
    ok = sync_ratio <= RATIO_TARGET and same and sequential.returncode == sliced.returncode == 0
    rows = [
        [
            r.label,
            fmt(r.records),
            fmt(r.wall_s, ".2f"),
            fmt(sync_seconds(r), ".2f"),
            fmt(r.rate),
            f"{fmt(r.calls)} (min {fmt(math.ceil(args.n / args.page_size))})",
            fmt(r.peak_rss_mb, ".1f"),
        ]
        for r in (sequential, sliced)
    ]
    common.print_table(
        f"partitioned full sync, n={args.n:,}, {args.latency_ms:g} ms per API call",
        ["run", "records", "wall s", "sync s", "rec/s", "query calls", "peak RSS MB"],
        rows,
    )
    verdict = "OK" if ok else "NOT MET"
    print(
        f"sliced / sequential: sync time {sync_ratio:.3f} (goal <= {RATIO_TARGET:.3f}), "
        f"process wall time {ratio:.3f}; records equal: {same} -> {verdict}"
    )
    common.write_results(
        "bench_partitioned",
        {
            "n": args.n,
            "object": args.object,
            "latency_ms": args.latency_ms,
            "slices": args.slices,
            "runs": {"sequential": sequential.as_dict(), "sliced": sliced.as_dict()},
            "checks": {
                "ratio_sliced_over_sequential": sync_ratio,
                "ratio_wall_sliced_over_sequential": ratio,
                "ratio_target": RATIO_TARGET,
                "records_equal": same,
                "ok": ok,
            },
        },
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
