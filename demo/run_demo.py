"""The main job, end to end, against the local Intacct emulator (`make demo`).

1. start `intacct-emulator` with a seeded multi-entity company (a SQLite file under demo-output/),
2. `meltano run` the extraction job: tap-intacct -> target-duckdb (the embedded warehouse),
3. `meltano run` tap-intacct -> target-jsonl, edit some vendor records in those files,
4. `meltano run` the load job: tap-jsonl -> target-intacct (upsert: records carry their `key`),
5. `meltano run` the extraction again: incremental, only the changed records come back,
6. print what happened (counts per stream, where the data is, per-record results) and stop.

It needs only the project venv (for the emulator) and the Meltano tool venv it runs in (meltano +
duckdb). Every plugin is declared fully in meltano.yml, so nothing touches Meltano Hub.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-output"
PROJECT_BIN = ROOT / ".venv" / "bin"
TOOL_BIN = Path(sys.executable).parent
SEED_RECORDS = int(os.environ.get("DEMO_SEED_RECORDS", "200"))
CHANGED_VENDORS = 10


def free_port() -> int:
    """A free loopback port, so the demo never collides with something already running."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(root_url: str, timeout: float = 60.0) -> None:
    """Poll the emulator's health endpoint until it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{root_url}/_emulator/health", timeout=2) as resp:  # noqa: S310
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"emulator did not become healthy at {root_url}")


def stats(root_url: str) -> dict[str, int]:
    """Request counts per endpoint, as the emulator saw them."""
    with urllib.request.urlopen(f"{root_url}/_emulator/stats", timeout=5) as resp:  # noqa: S310
        return dict(json.load(resp)["requests"])


def meltano(*args: str, env: dict[str, str]) -> None:
    """Run one meltano command in the project, echoing it; fail the demo on error."""
    print(f"\n$ meltano {' '.join(args)}", flush=True)
    subprocess.run([str(TOOL_BIN / "meltano"), *args], cwd=ROOT, env=env, check=True)  # noqa: S603


def warehouse_counts(db_path: Path) -> dict[str, int]:
    """Rows per table in the DuckDB warehouse."""
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        tables = con.execute(
            "select table_schema, table_name from information_schema.tables order by 1, 2"
        ).fetchall()
        return {
            f"{schema}.{name}": int(
                con.execute(f'select count(*) from "{schema}"."{name}"').fetchone()[0]  # type: ignore[index]  # noqa: S608 (names come from information_schema)
            )
            for schema, name in tables
        }


def change_vendors(extracted: Path, out_file: Path) -> list[dict[str, object]]:
    """Rename some vendors in the extracted files (whole records) and keep only those edits."""
    vendors = [json.loads(line) for line in extracted.read_text().splitlines() if line.strip()]
    changes = [
        {**vendor, "name": f"{vendor['name']} (renamed by demo)"}
        for vendor in sorted(vendors, key=lambda v: str(v["id"]))[:CHANGED_VENDORS]
    ]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text("".join(json.dumps(c) + "\n" for c in changes))
    return changes


def vendor_names(db_path: Path) -> dict[str, str]:
    """Vendor id -> name in the warehouse, to see exactly which records a load changed."""
    import duckdb

    with duckdb.connect(str(db_path), read_only=True) as con:
        rows = con.execute('select id, name from "intacct"."accounts_payable__vendor"').fetchall()
    return {str(vid): str(name) for vid, name in rows}


def main() -> int:
    """Run the demo; returns the process exit code."""
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    (ROOT / ".meltano" / "run").mkdir(parents=True, exist_ok=True)
    port = free_port()
    root_url = f"http://127.0.0.1:{port}"
    base_url = f"{root_url}/ia/api/v1"
    warehouse = OUT / "warehouse.duckdb"
    changes_file = OUT / "changes" / "accounts_payable__vendor.jsonl"
    files_dir = OUT / "files"

    emulator_log = (OUT / "emulator.log").open("w")
    emulator = subprocess.Popen(  # noqa: S603
        [
            str(PROJECT_BIN / "intacct-emulator"),
            "serve",
            "--port",
            str(port),
            "--db",
            str(OUT / "emulator.db"),
            "--seed-records",
            str(SEED_RECORDS),
            "--random-seed",
            "42",
        ],
        stdout=emulator_log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(root_url)
        print(f"emulator: {base_url} (client demo-client / demo-secret, user admin@DEMO)")
        env = {
            **os.environ,
            "INTACCT_BASE_URL": base_url,
            "INTACCT_TOKEN_STORE": str(OUT / "tokens.json"),
            "DEMO_WAREHOUSE": str(warehouse),
            "DEMO_CHANGES_FILE": str(changes_file),
            "DEMO_FILES_DIR": str(files_dir),
            "DEMO_RESULTS_FILE": str(OUT / "intacct-results.jsonl"),
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        }
        meltano("install", env=env)
        # A demo starts from a fresh company, so it ignores state left by an earlier demo.
        meltano("run", "--full-refresh", "intacct-to-warehouse", env=env)
        first = warehouse_counts(warehouse)

        names_before = vendor_names(warehouse)
        meltano("run", "--full-refresh", "intacct-to-files", env=env)
        changes = change_vendors(files_dir / "accounts_payable__vendor.jsonl", changes_file)
        print(f"\nchanged {len(changes)} vendors in {changes_file.relative_to(ROOT)}")
        meltano("run", "files-to-intacct", env=env)

        before_incremental = stats(root_url)
        meltano("run", "intacct-to-warehouse", env=env)
        after = stats(root_url)
        second = warehouse_counts(warehouse)

        results = [
            json.loads(line)
            for line in (OUT / "intacct-results.jsonl").read_text().splitlines()
            if line.strip()
        ]
        print("\n== what happened")
        print(f"warehouse: {warehouse.relative_to(ROOT)} (DuckDB)")
        for table, count in first.items():
            print(f"  {table:55s} {count:6d} rows after the first run, {second[table]:6d} after")
        ok = sum(1 for r in results if r.get("status") == "ok")
        print(f"load back: {ok}/{len(results)} records ok -> {OUT.name}/intacct-results.jsonl")
        for result in results[:3]:
            print(f"  {json.dumps(result)[:160]}")
        incremental_queries = after.get("POST /services/core/query", 0) - before_incremental.get(
            "POST /services/core/query", 0
        )
        print(f"incremental re-run: {incremental_queries} query calls")
        print(f"emulator request counts: {json.dumps(after, indent=1)}")
        names_after = vendor_names(warehouse)
        differ = {vid for vid, name in names_after.items() if names_before.get(vid) != name}
        expected = {str(c["id"]) for c in changes}
        verdict = (
            "exactly the edited ones" if differ == expected else f"expected {sorted(expected)}"
        )
        print(f"vendors whose name changed in the warehouse: {len(differ)} ({verdict})")
        return 0 if ok == len(changes) == CHANGED_VENDORS and differ == expected else 1
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()
        emulator_log.close()


if __name__ == "__main__":
    sys.exit(main())
