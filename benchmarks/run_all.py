"""Run every benchmark in turn (what `make bench` calls) and print a one-screen summary.

Scenarios, each a ratio of runs made side by side in one invocation:

* tap: full sync of N (default 100,000) customers vs the lean bare loop, without and with
  ``--latency-ms`` (default 250) on the emulator;
* target: upsert of ``--target-n`` (default 20,000) *existing* customers under that latency vs
  the bare upsert loop with 1 and 4 batches in flight, then creates of new ones vs the bare
  create loop, same latency, with the target's disk caches warm (every run after the first on
  a machine) and then off (a first run: shown, no goal); each side's best of
  ``--target-repeat`` (3) alternated runs;
* parallel partitioned full sync: 80,000 customers at 2 s per API call, ``parallel_slices: 4``
  vs the sequential read (goal: at most 1/3 of the sequential time; about 70 s);
* the emulator alone.

Order matters: the tap and target benchmarks run first so that the emulator benchmark can put
its figures next to theirs ("the emulator is N times faster than the tap"). Each benchmark is
its own process, so one failing does not hide the others' figures.

    .venv/bin/python -m benchmarks.run_all                  # N = 100,000, 250 ms scenarios
    .venv/bin/python -m benchmarks.run_all --n 1000000      # the issue's large size
    .venv/bin/python -m benchmarks.run_all --n 20000 --quick --latency-ms 0
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from benchmarks import common
from benchmarks.common import fmt


def run(module: str, args: Sequence[str]) -> int:
    """One benchmark as a child process; its output streams straight through."""
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *args]
    print(f"\n=== {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd, cwd=common.REPO, check=False).returncode


def load(name: str) -> dict[str, Any] | None:
    """A benchmark's JSON result, if it produced one."""
    path = common.RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def summary(tap_names: Sequence[str], target_names: Sequence[str]) -> None:
    """The headline figures of this run's stored results, side by side."""
    rows = []
    for name in tap_names:
        tap = load(name)
        if tap and not tap.get("skipped"):
            c, b = tap["checks"], tap["best"]
            latency = f", {tap['latency_ms']:g} ms" if tap.get("latency_ms") else ""
            rows.append(
                [
                    f"tap, n={tap['n']:,}{latency}",
                    fmt(b["tap"]["rate"]),
                    f"{fmt(b['bare']['rate'])} (lean)",
                    f"{fmt(c['ratio_tap_over_bare'], '.3f')} (>= {c['ratio_target']})",
                    f"{fmt(b['tap']['calls'])} / {fmt(b['tap']['expected_calls'])} query",
                    fmt(b["tap"]["peak_rss_mb"], ".1f"),
                ]
            )
    for name in target_names:
        target = load(name)
        if target:
            c, b = target["checks"], target["best"]
            what = target.get("operation", "default")
            what += " existing" if target.get("existing") else ""
            what += f", {target['latency_ms']:g} ms" if target.get("latency_ms") else ""
            what += ", caches off (first run)" if target.get("caches") == "cold" else ""
            rows.append(
                [
                    f"target {what}, n={target['n']:,}",
                    fmt(b["target"]["rate"]),
                    f"{fmt(b['bare']['rate'])} ({c.get('goal_in_flight', 1)} in flight)",
                    f"{fmt(c['ratio_target_over_bare'], '.3f')} "
                    + (f"(>= {c['ratio_target']})" if c.get("goal_applies", True) else "(no goal)"),
                    f"{'OK' if c['calls_ok'] else 'NOT MET'}: {c.get('calls_rule', '')}",
                    fmt(b["target"]["peak_rss_mb"], ".1f"),
                ]
            )
    if rows:
        common.print_table(
            "summary (ratios of runs side by side; calls at the minimum; RSS < 200 MB at 1M)",
            ["benchmark", "connector rec/s", "bare rec/s", "ratio (goal)", "calls", "peak RSS MB"],
            rows,
        )
    partitioned = load("bench_partitioned")
    if partitioned:
        c, r, p = partitioned["checks"], partitioned["runs"], partitioned
        print(
            f"\npartitioned full sync, n={p['n']:,}, {p['latency_ms']:g} ms per "
            f"call: sequential {fmt(r['sequential']['wall_s'], '.1f')} s, "
            f"{p['slices']} slices {fmt(r['sliced']['wall_s'], '.1f')} s (process wall); "
            f"sync time ratio {fmt(c['ratio_sliced_over_sequential'], '.3f')} "
            f"(goal <= {c['ratio_target']:.3f}: {'OK' if c['ok'] else 'NOT MET'}), "
            f"records equal: {c['records_equal']}"
        )
    emulator = load("bench_emulator")
    if emulator:
        print("\nemulator (records/s served, sequential client):")
        for name, r in emulator["scenarios"].items():
            rate, reqs = fmt(r["records_per_s"]), fmt(r["req_per_s"], ".2f")
            print(f"  {name:<45} {rate:>10} rec/s  {reqs} req/s")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run the benchmarks, print the summary; non-zero if any failed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records for the tap benchmark")
    ap.add_argument(
        "--target-n", type=int, default=20_000, help="records for the target benchmarks"
    )
    ap.add_argument(
        "--latency-ms",
        type=float,
        default=250.0,
        help="emulator latency of the latency scenarios (tap and target; 0 skips them)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs of each tap side (best of)")
    ap.add_argument(
        "--target-repeat",
        type=int,
        default=3,
        help="runs of each target side (best of): a 4 s run at 250 ms moves by +-0.05 between "
        "single runs on a shared 2-core machine",
    )
    ap.add_argument("--quick", action="store_true", help="emulator benchmark: 3 s per scenario")
    ap.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("tap", "target", "partitioned", "emulator"),
    )
    args = ap.parse_args(argv)

    rcs = []
    common_args = ["--repeat", str(args.repeat)]
    latency = ["--latency-ms", f"{args.latency_ms:g}"] if args.latency_ms else []
    suffix = f"_latency{args.latency_ms:g}" if args.latency_ms else ""
    tap_names: list[str] = []
    target_names: list[str] = []
    if "tap" not in args.skip:
        rcs.append(run("bench_tap", ["--n", str(args.n), *common_args]))
        tap_names.append("bench_tap")
        if latency:
            rcs.append(run("bench_tap", ["--n", str(args.n), *latency, *common_args]))
            tap_names.append(f"bench_tap{suffix}")
    if "target" not in args.skip:
        n = ["--n", str(args.target_n)]
        repeat = ["--repeat", str(args.target_repeat)]
        upsert = ["--operation", "upsert", "--existing"]
        rcs.append(run("bench_target", [*n, *upsert, *latency, *repeat]))
        target_names.append(f"bench_target_upsert_existing{suffix}")
        rcs.append(run("bench_target", [*n, "--operation", "create", *latency, *repeat]))
        target_names.append(f"bench_target_create{suffix}")
        cold = [*n, "--operation", "create", *latency, "--caches", "cold", *repeat]
        rcs.append(run("bench_target", cold))
        target_names.append(f"bench_target_create{suffix}_cold")
    if "partitioned" not in args.skip:
        rcs.append(run("bench_partitioned", []))
    if "emulator" not in args.skip:
        seconds = ["--seconds", "3"] if args.quick else []
        rcs.append(run("bench_emulator", ["--n", str(args.n), *seconds]))
    summary(tap_names, target_names)
    return 0 if all(rc == 0 for rc in rcs) else 1


if __name__ == "__main__":
    sys.exit(main())
