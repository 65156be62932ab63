"""Print the README's Meltano figures, measured: discovery time and log lines of a 3-stream run.

A fresh Meltano project in a temp folder (like a new user's, and like
``tests/integration/test_meltano_from_ref.py``) adds both plugins with
``meltano add --from-ref`` (the wheel of this checkout offered through ``UV_FIND_LINKS``),
then runs ``meltano run tap-intacct target-intacct`` with three streams selected against a
seeded emulator, twice: the first run builds the catalog, the second finds Meltano's own
catalog cache (a non-editable install), a third forces discovery with ``--refresh-catalog``
(the tap's catalog cache is warm). For each run it prints the seconds from Meltano's "Running
catalog discovery" to the tap's first sync line, the whole run's seconds, and how many log
lines it printed.

Run it from the checkout after ``make test`` (it needs .venv and .venv-meltano):
    .venv/bin/python scripts/measure_meltano_run.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
STREAMS = ["accounts_receivable__customer", "accounts_payable__vendor", "general_ledger__account"]
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def _meltano(project: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - the Meltano tool venv's own script
        [str(MELTANO), *args], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"meltano {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stderr


def _moment(line: str) -> dt.datetime:
    match = _STAMP.match(line)
    if match is None:
        raise ValueError(line)
    return dt.datetime.fromisoformat(match.group(1))


def discovery_seconds(log: str) -> float | None:
    """From "Running catalog discovery" to the tap's first "Beginning sync" line.

    None when Meltano did not run discovery (it caches the catalog of a non-editable install).
    """
    lines = log.splitlines()
    start = next((_moment(x) for x in lines if "Running catalog discovery" in x), None)
    first = next(_moment(x) for x in lines if "Beginning sync of" in x)
    return None if start is None else (first - start).total_seconds()


def _discover_seconds(folder: Path, base_url: str, objects: list[str] | None, cache: str) -> float:
    """Wall seconds of one ``tap-intacct --discover`` (``cold``: a fresh cache folder)."""
    from tap_intacct.selection import DEFAULT_OBJECTS

    config = {
        "base_url": base_url,
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "username": "admin@DEMO",
        "objects": list(DEFAULT_OBJECTS) if objects is None else objects,
    }
    path = folder / "discover.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "XDG_CACHE_HOME": str(folder / f"discover-cache-{len(config['objects'])}")}
    if cache == "cold":
        shutil.rmtree(env["XDG_CACHE_HOME"], ignore_errors=True)
    tap = Path(sys.executable).parent / "tap-intacct"
    started = time.monotonic()
    subprocess.run(  # noqa: S603 - our own console script
        [str(tap), "--config", str(path), "--discover"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.monotonic() - started


def main() -> int:
    """Measure and print; returns the exit code."""
    from intacct_emulator.testing import EmulatorServer

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        subprocess.run([*build, "-w", str(folder / "wheels"), str(ROOT)], check=True)  # noqa: S603
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MELTANO_", "INTACCT_"))},
            "UV_FIND_LINKS": str(folder / "wheels"),
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "XDG_CACHE_HOME": str(folder / "cache"),  # a cold catalog cache for run 1
            "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv")),
        }
        _meltano(folder, env, "init", "project", "--no_usage_stats")
        project = folder / "project"
        with EmulatorServer(seed_records=200) as emulator:
            for prefix in ("TAP_INTACCT", "TARGET_INTACCT"):
                env[f"{prefix}_BASE_URL"] = emulator.base_url
                env[f"{prefix}_CLIENT_ID"] = "demo-client"
                env[f"{prefix}_CLIENT_SECRET"] = "demo-secret"
                env[f"{prefix}_USERNAME"] = "admin@DEMO"
                env[f"{prefix}_TOKEN_STORE"] = str(folder / "tokens.json")
            env["TARGET_INTACCT_RESULTS_PATH"] = str(folder / "results.jsonl")
            env["TARGET_INTACCT_DRY_RUN"] = "true"  # validate only: the figures are the tap's
            env["TAP_INTACCT__SELECT"] = str([f"{s}.*" for s in STREAMS]).replace("'", '"')
            for kind in ("extractors/tap-intacct", "loaders/target-intacct"):
                ref = ROOT / "plugins" / f"{kind}--intacct-singer.yml"
                _meltano(project, env, "add", "--from-ref", str(ref), kind.split("/")[1])
            print("tap-intacct --discover alone (wall time, process start included)")
            for objects, label in ((None, "curated default objects"), ([], "all 523 objects")):
                for cache in ("cold", "warm"):
                    seconds = _discover_seconds(folder, emulator.base_url, objects, cache)
                    print(f"  {label:24s} catalog cache {cache}: {seconds:.2f} s")
            print(f"meltano run tap-intacct target-intacct, {len(STREAMS)} streams selected")
            runs = (
                ("first run", ()),
                ("second run", ()),
                ("with --refresh-catalog", ("--refresh-catalog",)),
            )
            for label, flags in runs:
                started = time.monotonic()
                log = _meltano(project, env, "run", *flags, "tap-intacct", "target-intacct")
                total = time.monotonic() - started
                seconds = discovery_seconds(log)
                discovery = (
                    "no discovery (Meltano's catalog cache)"
                    if seconds is None
                    else f"discovery {seconds:.2f} s (until the tap's first stream)"
                )
                print(
                    f"  {label:24s} {discovery}, whole run {total:.1f} s, "
                    f"{len(log.splitlines())} log lines"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
