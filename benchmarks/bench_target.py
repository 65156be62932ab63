"""Target benchmark: load N new records with `target-intacct` vs the bare httpx+msgspec loop.

Input: one Singer file, generated once and cached: the SCHEMA the tap discovers for the stream
(the schema a real Intacct -> Intacct pipeline would carry, with key property `id` since new
records have no `key` yet) and N RECORD lines of new records (unique ids, no `key`, so every
one is a create). Both sides read the same file from stdin /
`--input`, against the same emulator, which is reset (empty company) before each run. The
target runs with its defaults: validation on. Printed per run: records created (counted in
the emulator afterwards), wall seconds, records/s, CPU seconds, peak RSS, write calls vs
ceil(N / 500), other API calls, and the emulator's CPU seconds; then the ratio target/bare
(target >= 0.5).

    .venv/bin/python -m benchmarks.bench_target --n 100000
    .venv/bin/python -m benchmarks.bench_target --n 20000 --profile   # cProfile of the target
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

import httpx
import msgspec

from benchmarks import common
from benchmarks.common import Emulator, RunResult, fmt

RSS_LIMIT_MB = 200.0
RATIO_TARGET = 0.5
_CITIES = ("San Jose", "Austin", "Boston", "Denver", "Seattle", "Atlanta", "Chicago")
_STATES = ("CA", "TX", "MA", "CO", "WA", "GA", "IL")


def new_record(i: int) -> dict[str, Any]:
    """A writable customer, varied enough that validation and encoding do real work.

    Only fields a user would send on create (no `key`, `href`, audit or other read-only
    fields). `creditLimit` is a JSON number: the spec types it `number` and the target's
    request validation refuses the decimal string ("0.00") that real Intacct returns for it.
    """
    city = i % len(_CITIES)
    return {
        "id": f"BENCH-{i:08d}",
        "name": f"Benchmark Customer {i}",
        "status": "active" if i % 10 else "inactive",
        "taxId": f"{i % 1000:03d}-{i % 100000:05d}",
        "creditLimit": (i % 97) * 250,
        "isOnHold": i % 13 == 0,
        "emailOptIn": i % 2 == 0,
        "deliveryOptions": ("print", "email", "both")[i % 3],
        "currency": "USD",
        "contacts": {
            "default": {
                "firstName": f"First{i % 1000}",
                "lastName": f"Last{i}",
                "email1": f"customer{i}@example.com",
                "phone1": f"+1-555-{i % 10000:04d}",
                "companyName": f"Benchmark Customer {i}",
                "mailingAddress": {
                    "addressLine1": f"{i % 9999 + 1} Main Street",
                    "city": _CITIES[city],
                    "state": _STATES[city],
                    "postCode": f"{10000 + i % 89999}",
                    "country": "United States",
                },
            }
        },
    }


def discovered_schema(emulator: Emulator, object_name: str, workdir: Path) -> dict[str, Any]:
    """The stream's catalog entry from `tap-intacct --discover` (schema + key properties)."""
    from benchmarks.bench_tap import discover, tap_config

    config = tap_config(emulator, object_name, common.QUERY_PAGE, workdir)
    _, entry = discover(config, common.stream_name(object_name), workdir)
    return entry


def singer_file(emulator: Emulator, object_name: str, n: int, *, fresh: bool = False) -> Path:
    """Build (once) the cached Singer input: SCHEMA, N RECORDs, one STATE."""
    common.CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = common.CACHE_DIR / f"target-{object_name.replace('/', '__')}-{n}-v3.singer.jsonl"
    if path.exists() and not fresh:
        return path
    stream = common.stream_name(object_name)
    with tempfile.TemporaryDirectory(prefix="bench-target-discover-") as tmp:
        entry = discovered_schema(emulator, object_name, Path(tmp))
    encoder = msgspec.json.Encoder()
    tmp_path = path.with_suffix(".tmp")
    with tmp_path.open("wb") as out:
        schema_msg = {
            "type": "SCHEMA",
            "stream": stream,
            "schema": entry["schema"],
            # The tap's key is `key`, which new records cannot have yet (singer-sdk refuses
            # records missing a key property); the natural key `id` is what upsert matches on.
            "key_properties": ["id"],
        }
        out.write(encoder.encode(schema_msg) + b"\n")
        chunk: list[bytes] = []
        for i in range(n):
            msg = {"type": "RECORD", "stream": stream, "record": new_record(i)}
            chunk.append(encoder.encode(msg))
            if len(chunk) == 10_000:
                out.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            out.write(b"\n".join(chunk) + b"\n")
        out.write(encoder.encode({"type": "STATE", "value": {"benchmark": n}}) + b"\n")
    tmp_path.replace(path)
    return path


def target_config(emulator: Emulator, workdir: Path, operation: str | None) -> Path:
    """Target config: the emulator, demo credentials, a private token file, defaults otherwise.

    Defaults include `validate_records: true`: the benchmark measures the validated path. The
    per-record results file goes to the temporary folder, not the repository. ``operation``
    None keeps the target's default (upsert: one lookup query per batch before the writes).
    """
    config: dict[str, Any] = {
        "base_url": emulator.base_url,
        "client_id": common.CLIENT_ID,
        "client_secret": common.CLIENT_SECRET,
        "username": common.USERNAME,
        "token_store": str(workdir / "tokens.json"),
        "results_path": str(workdir / "results.jsonl"),
    }
    if operation:
        config["operation"] = operation
    path = workdir / "target-config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def count_records(emulator: Emulator, object_name: str) -> int:
    """Records of the object now in the emulator (query `totalCount`)."""
    body = {"object": object_name, "fields": ["key"], "size": 1}
    resp = httpx.post(
        emulator.base_url + "/services/core/query",
        json=body,
        headers={"Authorization": f"Bearer {emulator.token()}"},
        timeout=120,
    )
    resp.raise_for_status()
    total: int = resp.json()["ia::meta"]["totalCount"]
    return total


def measure(
    label: str,
    cmd: Sequence[str],
    *,
    stdin: Path | None,
    emulator: Emulator,
    n: int,
    object_name: str,
    timeout: float,
) -> RunResult:
    """Reset the company, run one side, count calls and the records that arrived."""
    emulator.reset()
    before = emulator.stats()
    result = common.run_child(
        label,
        cmd,
        stdin_path=stdin,
        count_stdout=False,
        env=common.child_env(),
        timeout=timeout,
        emulator=emulator,
    )
    delta = common.stats_delta(before, emulator.stats())
    result.calls = common.count_calls(delta, kind="write", object_name=object_name)
    result.expected_calls = common.min_calls(n, common.WRITE_BATCH)
    result.extra["requests"] = {
        k.removeprefix("requests."): v for k, v in delta.items() if k.startswith("requests.")
    }
    result.extra["total_calls"] = delta.get("total", 0)
    result.records = count_records(emulator, object_name)
    return result


def profile_target(cmd: Sequence[str], stdin: Path, emulator: Emulator, top: int) -> Path:
    """Run the target once under cProfile and print where its time goes (not a timed run)."""
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    prof = common.RESULTS_DIR / "bench_target.prof"
    emulator.reset()
    result = common.run_child(
        "target (cProfile)",
        [sys.executable, "-m", "cProfile", "-o", str(prof), *cmd],
        stdin_path=stdin,
        count_stdout=False,
        env=common.child_env(),
        timeout=3600,
        emulator=emulator,
    )
    print(f"\ncProfile run: {result.wall_s:.1f}s -> {prof}")
    stats = pstats.Stats(str(prof))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return prof


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the input, run bare and target side by side, print and store the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records to load")
    ap.add_argument("--object", default=common.DEFAULT_OBJECT)
    ap.add_argument(
        "--operation",
        choices=("upsert", "create"),
        default=None,
        help="target `operation` setting (default: the target's default, upsert)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs; best of each")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per child process, seconds")
    ap.add_argument("--profile", action="store_true", help="also run the target under cProfile")
    ap.add_argument("--profile-top", type=int, default=35)
    ap.add_argument("--fresh-input", action="store_true", help="regenerate the Singer file")
    args = ap.parse_args(argv)

    stream = common.stream_name(args.object)
    with tempfile.TemporaryDirectory(prefix="bench-target-") as tmp, Emulator() as emulator:
        workdir = Path(tmp)
        data = singer_file(emulator, args.object, args.n, fresh=args.fresh_input)
        config = target_config(emulator, workdir, args.operation)
        target_cmd = [common.script("target-intacct"), "--config", str(config)]
        bare_cmd = [sys.executable, str(common.BENCH_DIR / "bare_target_loop.py")]
        bare_cmd += ["--base-url", emulator.base_url, "--object", args.object]
        bare_cmd += ["--stream", stream, "--batch-size", str(common.WRITE_BATCH)]

        bare_runs: list[RunResult] = []
        target_runs: list[RunResult] = []
        common_kw: dict[str, Any] = {
            "stdin": data,
            "emulator": emulator,
            "n": args.n,
            "object_name": args.object,
            "timeout": args.timeout,
        }
        for _ in range(args.repeat):
            bare_runs.append(measure("bare loop", bare_cmd, **common_kw))
            (workdir / "tokens.json").unlink(missing_ok=True)
            target_runs.append(measure("target-intacct", target_cmd, **common_kw))
        if args.profile:
            (workdir / "tokens.json").unlink(missing_ok=True)
            profile_target(target_cmd, data, emulator, args.profile_top)
        emulator_rss = emulator.peak_rss_mb()

    bare, target = common.best(bare_runs), common.best(target_runs)
    rows = []
    for r in (bare, target):
        other_calls = int(r.extra.get("total_calls", 0)) - (r.calls or 0)
        rows.append(
            [
                r.label,
                fmt(r.records),
                fmt(r.wall_s, ".2f"),
                fmt(r.rate),
                fmt(r.cpu_s, ".2f"),
                fmt(r.peak_rss_mb, ".1f"),
                f"{fmt(r.calls)} / {fmt(r.expected_calls)}",
                fmt(other_calls),
                fmt(r.emulator_cpu_s, ".2f"),
            ]
        )
    common.print_table(
        f"target: load of {args.n:,} new {args.object} records (validation on, "
        f"operation {args.operation or 'default (upsert)'})",
        [
            "run",
            "created",
            "wall s",
            "rec/s",
            "CPU s",
            "peak RSS MB",
            "write calls / min",
            "other calls",
            "emulator CPU s",
        ],
        rows,
    )
    ratio = target.rate / bare.rate if bare.rate else 0.0
    cpu_ratio = bare.cpu_s / target.cpu_s if target.cpu_s else 0.0
    busy = (target.emulator_cpu_s or 0.0) / target.wall_s if target.wall_s else 0.0
    checks = {
        "ratio_target_over_bare": ratio,
        "ratio_target": RATIO_TARGET,
        "ratio_ok": ratio >= RATIO_TARGET,
        "cpu_ratio_bare_over_target": cpu_ratio,
        "records_ok": target.records == args.n and bare.records == args.n,
        "calls_ok": target.calls == target.expected_calls,
        "target_peak_rss_mb": target.peak_rss_mb,
        "rss_limit_mb": RSS_LIMIT_MB,
        "rss_ok": target.peak_rss_mb < RSS_LIMIT_MB,
        "emulator_peak_rss_mb": emulator_rss,
        "emulator_busy_fraction_during_target": busy,
    }
    print(
        f"\nratio target/bare (records/s, spawn to exit): {ratio:.3f}  "
        f"(target >= {RATIO_TARGET}: {'OK' if checks['ratio_ok'] else 'BELOW'})"
    )
    print(f"CPU ratio bare/target:                        {cpu_ratio:.3f}")
    print(f"emulator busy during the target run: {busy:.0%} of its wall time")
    print(
        f"write calls: target {fmt(target.calls)}, bare {fmt(bare.calls)}, minimum "
        f"ceil({args.n:,}/{common.WRITE_BATCH}) = {target.expected_calls}  "
        f"({'OK' if checks['calls_ok'] else 'ABOVE MINIMUM'})"
    )
    print(f"requests by the target: {target.extra['requests']}")
    print(f"target peak RSS: {target.peak_rss_mb:.1f} MB ({'OK' if checks['rss_ok'] else 'OVER'})")
    print(f"records created: target {target.records:,}, bare {bare.records:,} (sent {args.n:,})")
    common.write_results(
        "bench_target" + (f"_{args.operation}" if args.operation else ""),
        {
            "n": args.n,
            "object": args.object,
            "operation": args.operation or "default",
            "command": " ".join(
                [".venv/bin/python -m benchmarks.bench_target", *(argv or sys.argv[1:])]
            ),
            "runs": [r.as_dict() for r in bare_runs + target_runs],
            "best": {"bare": bare.as_dict(), "target": target.as_dict()},
            "checks": checks,
        },
    )
    return 0 if target.returncode == 0 and bare.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
