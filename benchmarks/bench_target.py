"""Target benchmark: `target-intacct` vs bare httpx+msgspec loops doing the same requests.

Input: one Singer file, generated once and cached: the SCHEMA the tap discovers for the stream
(the schema a real Intacct -> Intacct pipeline would carry, with key property `id` since new
records have no `key` yet) and N RECORD lines of customers (unique ids, no `key`). Every side
reads the same file from stdin, against the same emulator, which is reset (empty company)
before each run. The target runs with its defaults (validation on, 4 requests in flight).

The bare loop (`bare_target_loop.py`) does what the target's operation does and nothing else:
``--operation create`` one POST per 500 records; upsert (the default) one `$in` look-up on `id`
per 500 records, then one POST of the new ones and one PATCH of the existing ones. It runs with
1 and with 4 batches in flight (``--in-flight``); the goal compares with 4 (the target's own
concurrency). Sides alternate: bare 1, bare 4, target (``--repeat`` times, best of each).

``--existing`` loads the same N records untimed before each timed run, so the upsert finds
them all (exactly 1 look-up + 1 PATCH per 500 records, checked). ``--latency-ms`` makes the
emulator answer every API request that much later during the timed runs (both sides; real
Intacct batch calls take 250 ms or more), and off again afterwards.

``--caches warm`` (the default) gives the target a private cache folder (``INTACCT_CACHE_DIR``)
and fills it with one untimed 500-record load first, so the timed runs start as every run after
the first on a machine does (spec index and request validators read from disk,
``intacct_api.disk_cache``); ``--caches cold`` turns the caches off (``INTACCT_CACHE_DIR=off``):
the first run on a fresh machine, or a container that starts empty every time.

Printed per run: records in the company afterwards, wall seconds, records/s, CPU seconds, peak
RSS, POST/PATCH calls, write calls vs ceil(N / 500), look-ups, other calls, the emulator's CPU
seconds; then the ratios target/bare for each in-flight count (goals: upsert >= 0.8, create
>= 0.9 of the bare loop with 4 in flight).

    .venv/bin/python -m benchmarks.bench_target --n 20000 --operation upsert --existing \
        --latency-ms 250
    .venv/bin/python -m benchmarks.bench_target --n 20000 --operation create --latency-ms 250
    .venv/bin/python -m benchmarks.bench_target --n 20000 --operation create --latency-ms 250 \
        --caches cold
    .venv/bin/python -m benchmarks.bench_target --n 100000
    .venv/bin/python -m benchmarks.bench_target --n 20000 --profile   # cProfile of the target
"""

from __future__ import annotations

import argparse
import json
import os
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
GOAL_UPSERT = 0.8
"""Issue #15: upsert >= 0.8 of the bare upsert loop with 4 batches in flight."""
GOAL_CREATE = 0.9
"""Issue #15: create >= 0.9 of its bare loop."""
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


def target_settings() -> dict[str, Any]:
    """The settings the installed target declares (`target-intacct --about --format=json`)."""
    import subprocess

    out = subprocess.run(
        [common.script("target-intacct"), "--about", "--format=json"],
        capture_output=True,
        check=False,
        cwd=common.REPO,
        timeout=300,
    )
    if out.returncode != 0:
        return {}
    props: dict[str, Any] = json.loads(out.stdout).get("settings", {}).get("properties", {})
    return props


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
    if "write_mode" in target_settings():
        # the comparison is request batches against the bare loop's request batches; bulk
        # jobs (`write_mode: auto` above a threshold) would be another benchmark
        config["write_mode"] = "batch"
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


def preload(cmd: Sequence[str], data: Path, emulator: Emulator, n: int, object_name: str) -> None:
    """Load the input's N records untimed (bare create loop, no latency), so that the timed
    upsert finds every one of them: 1 look-up + 1 PATCH per 500 records."""
    import subprocess

    with data.open("rb") as stdin:
        done = subprocess.run(list(cmd), stdin=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"preload failed: {done.stderr.decode(errors='replace')[-2000:]}")
    loaded = count_records(emulator, object_name)
    if loaded != n:
        raise SystemExit(f"preload left {loaded} records, expected {n}")


def measure(
    label: str,
    cmd: Sequence[str],
    *,
    stdin: Path,
    emulator: Emulator,
    n: int,
    object_name: str,
    timeout: float,
    latency_ms: float = 0.0,
    preload_cmd: Sequence[str] | None = None,
    env: dict[str, str] | None = None,
) -> RunResult:
    """Reset the company (and preload it), run one side under the latency, count the calls.

    The latency is switched on just before the run and off right after it, so the untimed
    preload and the record count do not pay it; both sides of a comparison get the same.
    """
    emulator.reset()
    if preload_cmd is not None:
        preload(preload_cmd, stdin, emulator, n, object_name)
    with emulator.latency(latency_ms):
        before = emulator.stats()
        result = common.run_child(
            label,
            cmd,
            stdin_path=stdin,
            count_stdout=False,
            env=env if env is not None else common.child_env(),
            timeout=timeout,
            emulator=emulator,
        )
        delta = common.stats_delta(before, emulator.stats())
    requests = {
        k.removeprefix("requests."): v for k, v in delta.items() if k.startswith("requests.")
    }
    collection = f"/objects/{object_name}"
    result.calls = common.count_calls(delta, kind="write", object_name=object_name)
    result.expected_calls = common.min_calls(n, common.WRITE_BATCH)
    result.extra["requests"] = requests
    result.extra["total_calls"] = delta.get("total", 0)
    result.extra["lookup_calls"] = common.count_calls(delta, kind="query", object_name=object_name)
    result.extra["post_calls"] = int(requests.get(f"POST {collection}", 0))
    result.extra["patch_calls"] = int(requests.get(f"PATCH {collection}", 0))
    result.records = count_records(emulator, object_name)
    return result


def profile_target(
    cmd: Sequence[str], stdin: Path, emulator: Emulator, top: int, env: dict[str, str]
) -> Path:
    """Run the target once under cProfile and print where its time goes (not a timed run)."""
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    prof = common.RESULTS_DIR / "bench_target.prof"
    emulator.reset()
    result = common.run_child(
        "target (cProfile)",
        [sys.executable, "-m", "cProfile", "-o", str(prof), *cmd],
        stdin_path=stdin,
        count_stdout=False,
        env={**common.PROFILE_ENV, **env},
        timeout=3600,
        emulator=emulator,
    )
    print(f"\ncProfile run: {result.wall_s:.1f}s -> {prof}")
    stats = pstats.Stats(str(prof))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return prof


def results_name(
    operation: str | None, existing: bool, latency_ms: float, caches: str = "warm"
) -> str:
    """`bench_target[_create][_existing][_latency250][_cold]`: one JSON file per scenario."""
    name = "bench_target" + (f"_{operation}" if operation else "")
    name += "_existing" if existing else ""
    name += f"_latency{latency_ms:g}" if latency_ms else ""
    return name + ("_cold" if caches == "cold" else "")


def warm_caches(cmd: Sequence[str], data: Path, workdir: Path, emulator: Emulator) -> None:
    """One untimed load of the input's first 500 records (SCHEMA first), so the disk caches
    hold what the timed runs read back; the company is reset by the next measure()."""
    import subprocess

    head = workdir / "warm-up.singer.jsonl"
    with data.open("rb") as source, head.open("wb") as out:
        for number, line in enumerate(source):
            if number > common.WRITE_BATCH:
                break
            out.write(line)
    emulator.reset()
    with head.open("rb") as stdin:
        env = {**os.environ, **target_env("warm", workdir)}
        done = subprocess.run(list(cmd), stdin=stdin, capture_output=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"warm-up failed: {done.stderr.decode(errors='replace')[-2000:]}")


def target_env(caches: str, workdir: Path) -> dict[str, str]:
    """The target's environment: its own cache folder (warm), or the caches off (cold)."""
    folder = "off" if caches == "cold" else str(workdir / "cache")
    return {**common.child_env(), "INTACCT_CACHE_DIR": folder}


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the input, run the bare loops and the target alternately, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records to load")
    ap.add_argument("--object", default=common.DEFAULT_OBJECT)
    ap.add_argument(
        "--operation",
        choices=("upsert", "create"),
        default=None,
        help="target `operation` setting (default: the target's default, upsert)",
    )
    ap.add_argument(
        "--existing",
        action="store_true",
        help="before each timed run, load the same N records untimed, so every upsert is an "
        "update (1 look-up + 1 PATCH per 500 records)",
    )
    ap.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="emulator latency per API request during the timed runs (both sides)",
    )
    ap.add_argument(
        "--in-flight",
        default="1,4",
        help="comma-separated batches in flight of the bare loops to compare with (default 1,4)",
    )
    ap.add_argument(
        "--caches",
        choices=("warm", "cold"),
        default="warm",
        help="the target's disk caches: filled by an untimed run first (warm, every run after "
        "the first on a machine) or off (cold, a first run)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="alternating runs; best of each")
    ap.add_argument("--timeout", type=float, default=3600.0, help="per child process, seconds")
    ap.add_argument("--profile", action="store_true", help="also run the target under cProfile")
    ap.add_argument("--profile-top", type=int, default=35)
    ap.add_argument("--fresh-input", action="store_true", help="regenerate the Singer file")
    args = ap.parse_args(argv)
    in_flights = sorted({max(1, int(k)) for k in args.in_flight.split(",") if k.strip()})
    mode = "create" if args.operation == "create" else "upsert"
    if args.existing and mode != "upsert":
        ap.error("--existing needs the upsert operation (creates of existing ids would fail)")

    stream = common.stream_name(args.object)
    with tempfile.TemporaryDirectory(prefix="bench-target-") as tmp, Emulator() as emulator:
        workdir = Path(tmp)
        data = singer_file(emulator, args.object, args.n, fresh=args.fresh_input)
        config = target_config(emulator, workdir, args.operation)
        target_cmd = [common.script("target-intacct"), "--config", str(config)]
        bare_base = [sys.executable, str(common.BENCH_DIR / "bare_target_loop.py")]
        bare_base += ["--base-url", emulator.base_url, "--object", args.object]
        bare_base += ["--stream", stream, "--batch-size", str(common.WRITE_BATCH)]
        bare_cmds = {k: [*bare_base, "--mode", mode, "--in-flight", str(k)] for k in in_flights}
        preload_cmd = (
            [*bare_base, "--mode", "create", "--in-flight", "4"] if args.existing else None
        )

        env = target_env(args.caches, workdir)
        if args.caches == "warm":
            warm_caches(target_cmd, data, workdir, emulator)
        bare_runs: dict[int, list[RunResult]] = {k: [] for k in in_flights}
        target_runs: list[RunResult] = []
        common_kw: dict[str, Any] = {
            "stdin": data,
            "emulator": emulator,
            "n": args.n,
            "object_name": args.object,
            "timeout": args.timeout,
            "latency_ms": args.latency_ms,
            "preload_cmd": preload_cmd,
        }
        for _ in range(args.repeat):
            for k, cmd in bare_cmds.items():
                bare_runs[k].append(measure(f"bare {mode}, {k} in flight", cmd, **common_kw))
            (workdir / "tokens.json").unlink(missing_ok=True)
            target_runs.append(measure("target-intacct", target_cmd, env=env, **common_kw))
        if args.profile:
            (workdir / "tokens.json").unlink(missing_ok=True)
            emulator.reset()
            if preload_cmd is not None:
                preload(preload_cmd, data, emulator, args.n, args.object)
            with emulator.latency(args.latency_ms):
                profile_target(target_cmd, data, emulator, args.profile_top, env)
        emulator_rss = emulator.peak_rss_mb()

    bares = {k: common.best(runs) for k, runs in bare_runs.items()}
    target = common.best(target_runs)
    rows = []
    for r in (*bares.values(), target):
        rows.append(
            [
                r.label,
                fmt(r.records),
                fmt(r.wall_s, ".2f"),
                fmt(r.rate),
                fmt(r.cpu_s, ".2f"),
                fmt(r.peak_rss_mb, ".1f"),
                f"{fmt(r.extra['post_calls'])} / {fmt(r.extra['patch_calls'])}",
                f"{fmt(r.calls)} / {fmt(r.expected_calls)}",
                fmt(r.extra["lookup_calls"]),
                fmt(int(r.extra.get("total_calls", 0)) - (r.calls or 0) - r.extra["lookup_calls"]),
                fmt(r.emulator_cpu_s, ".2f"),
            ]
        )
    what = "existing" if args.existing else "new"
    latency = f", {args.latency_ms:g} ms latency per request" if args.latency_ms else ""
    common.print_table(
        f"target: {args.operation or 'default (upsert)'} of {args.n:,} {what} {args.object} "
        f"records (validation on{latency}, {args.caches} caches)",
        [
            "run",
            "records after",
            "wall s",
            "rec/s",
            "CPU s",
            "peak RSS MB",
            "POST / PATCH",
            "write calls / min",
            "look-ups",
            "other calls",
            "emulator CPU s",
        ],
        rows,
    )
    ratios = {k: (target.rate / b.rate if b.rate else 0.0) for k, b in bares.items()}
    cpu_ratios = {k: (b.cpu_s / target.cpu_s if target.cpu_s else 0.0) for k, b in bares.items()}
    # the goal compares with the bare loop that has the target's own concurrency (4 requests
    # in flight by default), or the most concurrent bare loop run
    goal_k = 4 if 4 in bares else max(bares)
    goal = GOAL_UPSERT if mode == "upsert" else GOAL_CREATE
    batches = common.min_calls(args.n, common.WRITE_BATCH)
    lookups = target.extra["lookup_calls"]
    if args.existing:
        calls_ok = (
            target.calls == batches
            and lookups == batches
            and target.extra["post_calls"] == 0
            and target.extra["patch_calls"] == batches
        )
        calls_rule = f"exactly 2 calls per 500 records: {batches} look-ups + {batches} PATCH"
    elif mode == "upsert":
        calls_ok = target.calls == batches and lookups == batches
        calls_rule = f"{batches} look-ups + {batches} POST"
    else:
        calls_ok = target.calls == batches and lookups == 0
        calls_rule = f"{batches} POST, no look-up"
    busy = (target.emulator_cpu_s or 0.0) / target.wall_s if target.wall_s else 0.0
    checks = {
        "ratios_target_over_bare": {str(k): v for k, v in ratios.items()},
        "cpu_ratios_bare_over_target": {str(k): v for k, v in cpu_ratios.items()},
        "ratio_target_over_bare": ratios[goal_k],
        "goal_in_flight": goal_k,
        "ratio_target": goal,
        "ratio_ok": ratios[goal_k] >= goal,
        "goal_applies": args.caches == "warm",
        "records_ok": target.records == args.n and all(b.records == args.n for b in bares.values()),
        "calls_rule": calls_rule,
        "calls_ok": calls_ok,
        "target_peak_rss_mb": target.peak_rss_mb,
        "rss_limit_mb": RSS_LIMIT_MB,
        "rss_ok": target.peak_rss_mb < RSS_LIMIT_MB,
        "emulator_peak_rss_mb": emulator_rss,
        "emulator_busy_fraction_during_target": busy,
    }
    print()
    for k in bares:
        mark = ""
        if k == goal_k and args.caches == "cold":
            mark = "  (caches off, a first run: shown for comparison, the goal is measured warm)"
        elif k == goal_k:
            mark = f"  (goal >= {goal}: {'OK' if ratios[k] >= goal else 'BELOW'})"
        print(
            f"ratio target / bare {mode} with {k} in flight (records/s, spawn to exit): "
            f"{ratios[k]:.3f}{mark}   CPU ratio bare/target {cpu_ratios[k]:.3f}"
        )
    print(f"emulator busy during the target run: {busy:.0%} of its wall time")
    print(
        f"target calls: {fmt(target.calls)} write ({target.extra['post_calls']} POST, "
        f"{target.extra['patch_calls']} PATCH) + {lookups} look-up; expected {calls_rule}  "
        f"({'OK' if calls_ok else 'NOT MET'})"
    )
    print(f"requests by the target: {target.extra['requests']}")
    print(f"target peak RSS: {target.peak_rss_mb:.1f} MB ({'OK' if checks['rss_ok'] else 'OVER'})")
    counts = ", ".join(f"{b.label} {b.records:,}" for b in bares.values())
    print(f"records in the company after: target {target.records:,}, {counts} (sent {args.n:,})")
    common.write_results(
        results_name(args.operation, args.existing, args.latency_ms, args.caches),
        {
            "caches": args.caches,
            "n": args.n,
            "object": args.object,
            "operation": args.operation or "default",
            "existing": args.existing,
            "latency_ms": args.latency_ms,
            "command": " ".join(
                [".venv/bin/python -m benchmarks.bench_target", *(argv or sys.argv[1:])]
            ),
            "runs": [r.as_dict() for runs in bare_runs.values() for r in runs]
            + [r.as_dict() for r in target_runs],
            "best": {
                **{f"bare_{k}": b.as_dict() for k, b in bares.items()},
                "bare": bares[goal_k].as_dict(),
                "target": target.as_dict(),
            },
            "checks": checks,
        },
    )
    failed = target.returncode != 0 or any(b.returncode != 0 for b in bares.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
