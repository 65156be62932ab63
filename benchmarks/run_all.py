"""Run every benchmark in turn (what `make bench` calls) and print a one-screen summary.

Order matters: the tap and target benchmarks run first so that the emulator benchmark can put
its figures next to theirs ("the emulator is N times faster than the tap"). Each benchmark is
its own process, so one failing does not hide the others' figures.

    .venv/bin/python -m benchmarks.run_all                  # N = 100,000
    .venv/bin/python -m benchmarks.run_all --n 1000000      # the issue's large size
    .venv/bin/python -m benchmarks.run_all --n 20000 --quick
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


def summary() -> None:
    """The headline figures of the stored results, side by side."""
    rows = []
    tap = load("bench_tap")
    if tap:
        c, b = tap["checks"], tap["best"]
        rows.append(
            [
                f"tap, n={tap['n']:,}",
                fmt(b["tap"]["rate"]),
                fmt(b["bare"]["rate"]),
                fmt(c["ratio_tap_over_bare"], ".3f"),
                f"{fmt(b['tap']['calls'])} / {fmt(b['tap']['expected_calls'])} query",
                fmt(b["tap"]["peak_rss_mb"], ".1f"),
            ]
        )
    for name in ("bench_target", "bench_target_create"):
        target = load(name)
        if target:
            c, b = target["checks"], target["best"]
            rows.append(
                [
                    f"target ({target.get('operation', 'default')}), n={target['n']:,}",
                    fmt(b["target"]["rate"]),
                    fmt(b["bare"]["rate"]),
                    fmt(c["ratio_target_over_bare"], ".3f"),
                    f"{fmt(b['target']['calls'])} / {fmt(b['target']['expected_calls'])} write",
                    fmt(b["target"]["peak_rss_mb"], ".1f"),
                ]
            )
    if rows:
        common.print_table(
            "summary (ratio target >= 0.5; calls at the minimum; RSS < 200 MB at 1,000,000)",
            ["benchmark", "connector rec/s", "bare rec/s", "ratio", "calls / min", "peak RSS MB"],
            rows,
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
        "--target-n", type=int, default=None, help="records for the target benchmark (default: --n)"
    )
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="emulator benchmark: 3 s per scenario")
    ap.add_argument("--skip", action="append", default=[], choices=("tap", "target", "emulator"))
    args = ap.parse_args(argv)

    rcs = []
    common_args = ["--repeat", str(args.repeat)]
    if "tap" not in args.skip:
        rcs.append(run("bench_tap", ["--n", str(args.n), *common_args]))
    if "target" not in args.skip:
        target_n = args.target_n or args.n
        rcs.append(run("bench_target", ["--n", str(target_n), *common_args]))
    if "emulator" not in args.skip:
        seconds = ["--seconds", "3"] if args.quick else []
        rcs.append(run("bench_emulator", ["--n", str(args.n), *seconds]))
    summary()
    return 0 if all(rc == 0 for rc in rcs) else 1


if __name__ == "__main__":
    sys.exit(main())
