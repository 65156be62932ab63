"""Bulk jobs vs batches: the same customers through `target-intacct`, `write_mode: batch` and
`write_mode: bulk`, side by side in one run against one emulator (issue 16).

Why a benchmark and not only a test: the issue's figure is 200,000 customers, which takes
minutes on a small machine; the test suite checks the same promises with fewer records
(tests/target/test_bulk.py). Per mode this prints wall time, records/s, the write calls the emulator
counted (batch POSTs vs bulk job calls, look-up queries apart), and checks that every record
has an ``ok`` result and that the emulator holds each customer exactly once.

    .venv/bin/python benchmarks/bench_bulk.py --records 200000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from intacct_api.client import IntacctClient
from intacct_api.settings import ConnectionSettings
from intacct_emulator.testing import EmulatorServer

STREAM = "accounts_receivable__customer"
OBJECT = "accounts-receivable/customer"
TARGET = str(Path(sys.executable).with_name("target-intacct"))
SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "name": {"type": ["string", "null"]}},
}


def singer_file(path: Path, count: int) -> None:
    """SCHEMA, ``count`` customer RECORDs (ids BB000000...), one STATE."""
    with path.open("w") as out:
        schema = {"type": "SCHEMA", "stream": STREAM, "schema": SCHEMA, "key_properties": ["id"]}
        out.write(json.dumps(schema) + "\n")
        for i in range(count):
            record = {"id": f"BB{i:06d}", "name": f"Customer {i}"}
            out.write(json.dumps({"type": "RECORD", "stream": STREAM, "record": record}) + "\n")
        out.write(json.dumps({"type": "STATE", "value": {"done": True}}) + "\n")


def stored_ids(config: dict[str, Any]) -> Counter[str]:
    """How often each BB customer id exists in the emulator."""
    found: Counter[str] = Counter()
    with IntacctClient(ConnectionSettings.from_config(config)) as client:
        start: int | None = 1
        while start is not None:
            body = {
                "object": OBJECT,
                "fields": ["key", "id"],
                "filters": [{"$contains": {"id": "BB"}}],
                "orderBy": [{"key": "asc"}],
                "start": start,
                "size": 4000,
            }
            payload = client.query(body).json()
            found.update(str(row["id"]) for row in payload["ia::result"])
            start = payload["ia::meta"].get("next")
    return found


def run_mode(emu: EmulatorServer, work: Path, input_path: Path, mode: str, count: int) -> dict:
    """One target run in ``mode`` against a freshly reset emulator; figures and checks."""
    emu.reset()
    config = {
        "base_url": emu.base_url,
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "username": "admin@DEMO",
        "token_store": str(work / f"tokens-{mode}.json"),
        "results_path": str(work / f"results-{mode}.jsonl"),
        "write_mode": mode,
    }
    config_path = work / f"config-{mode}.json"
    config_path.write_text(json.dumps(config))
    started = time.monotonic()
    done = subprocess.run(
        [TARGET, "--config", str(config_path), "--input", str(input_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=work,
    )
    wall = time.monotonic() - started
    calls = {k: v for k, v in emu.requests().items() if "oauth2" not in k}
    statuses: Counter[str] = Counter()
    with Path(config["results_path"]).open() as results:
        for line in results:
            statuses[json.loads(line)["status"]] += 1
    ids = stored_ids(config)
    write_calls = sum(v for k, v in calls.items() if "core/query" not in k)
    return {
        "mode": mode,
        "exit": done.returncode,
        "wall_s": round(wall, 1),
        "records_per_s": round(count / wall),
        "write_calls": write_calls,
        "lookup_queries": calls.get("POST /services/core/query", 0),
        "calls": calls,
        "ok_results": statuses.get("ok", 0),
        "other_results": sum(v for k, v in statuses.items() if k != "ok"),
        "stored": len(ids),
        "duplicates": sum(1 for n in ids.values() if n > 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--modes", default="batch,bulk")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, EmulatorServer(seed_records=0) as emu:
        work = Path(tmp)
        input_path = work / "customers.jsonl"
        singer_file(input_path, args.records)
        for mode in args.modes.split(","):
            row = run_mode(emu, work, input_path, mode, args.records)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.records} customers, upsert by id")
    print(
        f"{'mode':6} {'wall s':>8} {'rec/s':>8} {'write calls':>12} {'look-ups':>9} "
        f"{'ok':>8} {'stored':>8} {'dupes':>6}"
    )
    for row in rows:
        print(
            f"{row['mode']:6} {row['wall_s']:>8} {row['records_per_s']:>8} "
            f"{row['write_calls']:>12} {row['lookup_queries']:>9} {row['ok_results']:>8} "
            f"{row['stored']:>8} {row['duplicates']:>6}"
        )
    good = all(
        r["exit"] == 0 and r["ok_results"] == r["stored"] == args.records and not r["duplicates"]
        for r in rows
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
