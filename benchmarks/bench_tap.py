"""Tap benchmark: full sync of N records by `tap-intacct` vs the lean bare httpx+msgspec loop.

Both read the same seeded emulator (one server, started once, warmed up by one untimed full
read) in the same run, alternately, each as its own process with stdout drained by a counting
sink. The bare loop (`bare_tap_loop.py`) sends the tap's exact keyset query bodies, prefetches
one page, decodes rows into a generated msgspec Struct and collects garbage once per page: the
leanest loop that writes the same lines. Printed per run: records, wall seconds, records/s
(spawn to exit, and "steady" after the first RECORD), CPU seconds, peak RSS, query calls (from
`/_emulator/stats`) vs ceil(N / 4000), and the emulator's own CPU seconds during the run. Then
the ratio tap/bare (goal >= 0.85) and the RSS check (< 200 MB at 1,000,000 records).
``--latency-ms`` makes the emulator answer every API request that much later during the timed
runs (both sides).

    .venv/bin/python -m benchmarks.bench_tap --n 100000
    .venv/bin/python -m benchmarks.bench_tap --n 100000 --latency-ms 250
    .venv/bin/python -m benchmarks.bench_tap --n 1000000 --repeat 1
    .venv/bin/python -m benchmarks.bench_tap --n 20000 --profile   # cProfile of the tap
"""

from __future__ import annotations

import argparse
import json
import pstats
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from benchmarks import common
from benchmarks.bench_emulator import Client, estimate_keyset_sync
from benchmarks.common import Emulator, RunResult, fmt

RSS_LIMIT_MB = 200.0
RATIO_TARGET = 0.85
"""Issue #15: the tap >= 0.85 of the lean bare loop (prefetch, Struct decoding, gc per page)."""


def tap_config(emulator: Emulator, object_name: str, page_size: int, workdir: Path) -> Path:
    """Write the tap's config: the emulator, demo credentials, one object, a private token file.

    A token file of its own per run keeps the user's real token store out of the benchmark and
    makes the tap mint its token inside its timing, as the bare loop does.
    """
    config = {
        "base_url": emulator.base_url,
        "client_id": common.CLIENT_ID,
        "client_secret": common.CLIENT_SECRET,
        "username": common.USERNAME,
        "token_store": str(workdir / "tokens.json"),
        "objects": [object_name],
        "page_size": page_size,
    }
    path = workdir / "tap-config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def discover(config: Path, stream: str, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """Run `tap-intacct --discover` and select exactly one stream (all its properties).

    Returns the catalog path and the selected stream's catalog entry. Discovery is not timed:
    Meltano caches the catalog, so a sync starts from a ready catalog as here.
    """
    import subprocess

    out = subprocess.run(
        [common.script("tap-intacct"), "--config", str(config), "--discover"],
        capture_output=True,
        check=False,
        cwd=common.REPO,
        timeout=600,
    )
    if out.returncode != 0:
        raise SystemExit(f"discovery failed:\n{out.stderr.decode(errors='replace')[-3000:]}")
    catalog = json.loads(out.stdout)
    chosen = None
    for entry in catalog["streams"]:
        selected = entry.get("tap_stream_id", entry.get("stream")) == stream
        for meta in entry.get("metadata", []):
            if meta.get("breadcrumb") == []:
                meta["metadata"]["selected"] = selected
            elif selected:
                meta["metadata"]["selected"] = True
        if selected:
            chosen = entry
    if chosen is None:
        names = [e.get("tap_stream_id") for e in catalog["streams"]]
        raise SystemExit(f"stream {stream} not in the discovered catalog: {names[:20]}")
    path = workdir / "catalog.json"
    path.write_text(json.dumps(catalog))
    return path, chosen


def bare_inputs(entry: dict[str, Any], object_name: str, workdir: Path) -> list[str]:
    """Files and flags that make the bare loop request the same fields and emit the same shape.

    The fields are what the tap's stream requests for an all-selected catalog: the schema's
    queryable leaves (`intacct_api.records.field_paths`), minus the tap's own `_` columns.
    """
    from intacct_api.records import field_paths
    from tap_intacct.columns import ENTITY, MODIFIED_AT, SYNTHETIC_COLUMNS

    schema = entry["schema"]
    fields = field_paths(schema, exclude=SYNTHETIC_COLUMNS)
    (workdir / "fields.json").write_text(json.dumps(fields))
    (workdir / "schema.json").write_text(json.dumps(schema))
    flags = ["--fields-file", str(workdir / "fields.json")]
    flags += ["--schema-file", str(workdir / "schema.json")]
    props = schema.get("properties", {})
    if MODIFIED_AT in props:
        flags += ["--alias", f"{MODIFIED_AT}=audit.modifiedDateTime"]
    if ENTITY in props:
        flags += ["--constant", f"{ENTITY}=null"]
    return flags


def measure(
    label: str,
    cmd: Sequence[str],
    *,
    emulator: Emulator,
    n: int,
    page_size: int,
    object_name: str,
    timeout: float,
    latency_ms: float = 0.0,
) -> RunResult:
    """One measured run with its query-call count taken from the emulator's counters.

    ``latency_ms`` is switched on for this run only (each side of a pair gets the same).
    """
    with emulator.latency(latency_ms):
        before = emulator.stats()
        result = common.run_child(
            label, cmd, env=common.child_env(), timeout=timeout, emulator=emulator
        )
        delta = common.stats_delta(before, emulator.stats())
    result.calls = common.count_calls(delta, kind="query", object_name=object_name)
    result.expected_calls = common.min_calls(n, page_size)
    result.extra["requests"] = {
        k.removeprefix("requests."): v for k, v in delta.items() if k.startswith("requests.")
    }
    return result


def shape(line: bytes | None) -> set[str] | None:
    """Dotted key paths of a RECORD line's record (to check both sides emit the same shape)."""
    if not line:
        return None
    record = msgspec.json.decode(line).get("record") or {}
    out: set[str] = set()

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                out.add(prefix + key)

    walk(record, "")
    return out


def profile_tap(tap_cmd: Sequence[str], workdir: Path, emulator: Emulator, top: int) -> Path:
    """Run the tap once under cProfile and print where its time goes (not a timed run)."""
    prof = common.RESULTS_DIR / "bench_tap.prof"
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), *tap_cmd]
    result = common.run_child(
        "tap (cProfile)", cmd, env=common.PROFILE_ENV, timeout=3600, emulator=emulator
    )
    print(f"\ncProfile run: {result.records:,} records in {result.wall_s:.1f}s -> {prof}")
    stats = pstats.Stats(str(prof))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return prof


def main(argv: Sequence[str] | None = None) -> int:
    """Seed, start the emulator, run bare and tap side by side, print and store the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records to seed and sync")
    ap.add_argument("--object", default=common.DEFAULT_OBJECT)
    ap.add_argument("--page-size", type=int, default=common.QUERY_PAGE)
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs; best of each")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per child process, seconds")
    ap.add_argument("--profile", action="store_true", help="also run the tap under cProfile")
    ap.add_argument("--profile-top", type=int, default=35)
    ap.add_argument("--fresh-seed", action="store_true", help="rebuild the cached database")
    ap.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the untimed full read that warms the emulator's database up first",
    )
    ap.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="emulator latency per API request during the timed runs (both sides)",
    )
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=30.0,
        help="refuse to start when the emulator alone is predicted to need longer (all runs)",
    )
    args = ap.parse_args(argv)

    stream = common.stream_name(args.object)
    db = common.seeded_db(args.object, args.n, fresh=args.fresh_seed)
    with tempfile.TemporaryDirectory(prefix="bench-tap-") as tmp, Emulator(db=db) as emulator:
        workdir = Path(tmp)
        estimate = estimate_keyset_sync(Client(emulator), args.object, args.n, args.page_size)
        predicted = estimate["estimated_sync_s"] * 2 * args.repeat
        print(
            f"emulator estimate: {estimate['page_s_few_rows_left']:.2f} s per page with few rows "
            f"left, {estimate['page_s_10pct_left']:.2f} s with 10% left -> about "
            f"{predicted / 60:.1f} min of server time for {2 * args.repeat} full syncs"
        )
        if predicted > args.max_minutes * 60:
            print(
                f"refusing to run: over --max-minutes {args.max_minutes:g}. The emulator "
                "answers keyset continuation pages by reading every remaining row (see "
                "benchmarks/README.md, Findings); raise --max-minutes to run anyway."
            )
            common.write_results(
                "bench_tap",
                {"n": args.n, "object": args.object, "skipped": True, "estimate": estimate},
            )
            return 2
        config = tap_config(emulator, args.object, args.page_size, workdir)
        catalog, entry = discover(config, stream, workdir)
        tap_cmd = [common.script("tap-intacct"), "--config", str(config)]
        tap_cmd += ["--catalog", str(catalog)]
        bare_cmd = [sys.executable, str(common.BENCH_DIR / "bare_tap_loop.py")]
        bare_cmd += ["--base-url", emulator.base_url, "--object", args.object]
        bare_cmd += ["--stream", stream, "--page-size", str(args.page_size)]
        bare_cmd += bare_inputs(entry, args.object, workdir)

        bare_runs: list[RunResult] = []
        tap_runs: list[RunResult] = []
        common_kw: dict[str, Any] = {
            "emulator": emulator,
            "n": args.n,
            "page_size": args.page_size,
            "object_name": args.object,
            "timeout": args.timeout,
            "latency_ms": args.latency_ms,
        }
        if not args.no_warmup:
            # The first full read of a database costs the emulator far more CPU than the next
            # ones (measured: 22 s vs 12 s at 1,000,000, 1.4 s vs 1.16 s at 100,000), which
            # would handicap whichever side runs first; one untimed pass levels that.
            warm = common.run_child(
                "warm-up",
                bare_cmd,
                count_stdout=False,
                env=common.child_env(),
                timeout=args.timeout,
            )
            print(f"untimed warm-up read (bare loop, output discarded): {warm.wall_s:.1f} s")
        for _ in range(args.repeat):
            bare_runs.append(measure("bare loop", bare_cmd, **common_kw))
            (workdir / "tokens.json").unlink(missing_ok=True)
            tap_runs.append(measure("tap-intacct", tap_cmd, **common_kw))
        if args.profile:
            (workdir / "tokens.json").unlink(missing_ok=True)
            profile_tap(tap_cmd, workdir, emulator, args.profile_top)
        emulator_rss = emulator.peak_rss_mb()

    bare, tap = common.best(bare_runs), common.best(tap_runs)
    rows = []
    for r in (bare, tap):
        rows.append(
            [
                r.label,
                fmt(r.records),
                fmt(r.wall_s, ".2f"),
                fmt(r.rate),
                fmt(r.steady_rate),
                fmt(r.cpu_s, ".2f"),
                fmt(r.records / r.cpu_s if r.cpu_s else None),
                fmt(r.peak_rss_mb, ".1f"),
                f"{fmt(r.calls)} / {fmt(r.expected_calls)}",
                fmt(r.emulator_cpu_s, ".2f"),
            ]
        )
    common.print_table(
        f"tap: full sync of {args.n:,} {args.object} (page size {args.page_size}"
        + (f", {args.latency_ms:g} ms latency per request)" if args.latency_ms else ")"),
        [
            "run",
            "records",
            "wall s",
            "rec/s",
            "steady rec/s",
            "CPU s",
            "rec/CPU s",
            "peak RSS MB",
            "query calls / min",
            "emulator CPU s",
        ],
        rows,
    )
    ratio = tap.rate / bare.rate if bare.rate else 0.0
    steady_ratio = (
        tap.steady_rate / bare.steady_rate if tap.steady_rate and bare.steady_rate else None
    )
    cpu_ratio = bare.cpu_s / tap.cpu_s if tap.cpu_s else 0.0
    same_shape = shape(tap.first_record_line) == shape(bare.first_record_line)
    checks = {
        "ratio_tap_over_bare": ratio,
        "ratio_target": RATIO_TARGET,
        "ratio_ok": ratio >= RATIO_TARGET,
        "steady_ratio": steady_ratio,
        "cpu_ratio_bare_over_tap": cpu_ratio,
        "records_ok": tap.records == args.n and bare.records == args.n,
        "calls_ok": tap.calls == tap.expected_calls,
        "tap_peak_rss_mb": tap.peak_rss_mb,
        "rss_limit_mb": RSS_LIMIT_MB,
        "rss_ok": tap.peak_rss_mb < RSS_LIMIT_MB,
        "same_record_shape": same_shape,
        "emulator_peak_rss_mb": emulator_rss,
        "emulator_busy_fraction_during_tap": (tap.emulator_cpu_s or 0.0) / tap.wall_s,
        "emulator_estimate": estimate,
    }
    print(
        f"\nratio tap/bare (records/s, spawn to exit): {ratio:.3f}  "
        f"(target >= {RATIO_TARGET}: {'OK' if checks['ratio_ok'] else 'BELOW'})"
    )
    print(f"ratio tap/bare (steady, after first record):  {fmt(steady_ratio, '.3f')}")
    print(f"CPU ratio bare/tap:                           {cpu_ratio:.3f}")
    emu_tap, emu_bare = tap.emulator_cpu_s or 0.0, bare.emulator_cpu_s or 0.0
    if min(emu_tap, emu_bare) > 0.5 and max(emu_tap, emu_bare) > 1.5 * min(emu_tap, emu_bare):
        print(
            f"  WARNING: the emulator spent {emu_bare:.1f} s CPU on the bare loop and "
            f"{emu_tap:.1f} s on the tap: their query bodies probably differ (did "
            "intacct_api.pager change? update bare_tap_loop.keyset_condition)."
        )
    busy = (tap.emulator_cpu_s or 0.0) / tap.wall_s if tap.wall_s else 0.0
    if busy > 0.5:
        print(
            f"  note: the emulator was busy {busy:.0%} of the tap's wall time, so the records/s "
            "ratio mostly measures the emulator; the CPU ratio measures the connectors."
        )
    print(
        f"query calls: tap {fmt(tap.calls)}, bare {fmt(bare.calls)}, "
        f"minimum ceil({args.n:,}/{args.page_size}) = {tap.expected_calls}"
        f"  ({'OK' if checks['calls_ok'] else 'ABOVE MINIMUM'})"
    )
    print(
        f"tap peak RSS: {tap.peak_rss_mb:.1f} MB (limit {RSS_LIMIT_MB:.0f} MB at 1,000,000: "
        f"{'OK' if checks['rss_ok'] else 'OVER'})"
    )
    print(f"records: tap {tap.records:,}, bare {bare.records:,} (expected {args.n:,})")
    print(f"same record shape (first RECORD line): {same_shape}")
    if not same_shape:
        a, b = shape(tap.first_record_line) or set(), shape(bare.first_record_line) or set()
        print(f"  only in tap: {sorted(a - b)[:15]}\n  only in bare: {sorted(b - a)[:15]}")
    common.write_results(
        "bench_tap" + (f"_latency{args.latency_ms:g}" if args.latency_ms else ""),
        {
            "n": args.n,
            "object": args.object,
            "page_size": args.page_size,
            "latency_ms": args.latency_ms,
            "command": " ".join(
                [".venv/bin/python -m benchmarks.bench_tap", *(argv or sys.argv[1:])]
            ),
            "runs": [r.as_dict() for r in bare_runs + tap_runs],
            "best": {"bare": bare.as_dict(), "tap": tap.as_dict()},
            "checks": checks,
        },
    )
    return 0 if tap.returncode == 0 and bare.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
