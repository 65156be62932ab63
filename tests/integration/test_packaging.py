"""The wheel carries Sage's spec files, and a non-editable install finds them.

An editable install reads `specs/` from the checkout, which would hide a wheel that forgot them.
So this builds the real wheel, unpacks it into an empty folder, and runs the CLI from there in a
working directory outside the checkout, with the unpacked copy first on the import path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support.paths import ROOT


def _spec_operation_count(application: str) -> int:
    """Operations of one application counted straight from the raw spec files."""
    count = 0
    for spec_file in (ROOT / "specs").glob("*.json"):
        for path, item in json.loads(spec_file.read_text())["paths"].items():
            parts = path.strip("/").split("/")
            app = parts[1] if len(parts) > 1 else ""
            app = "accounts-payable" if app == "acounts-payable" else app
            if parts[0] in {"objects", "workflows"} and app == application:
                count += sum(1 for m in item if m in {"get", "post", "patch", "put", "delete"})
    return count


def test_wheel_ships_specs_and_installed_cli_finds_them(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
    )
    (wheel,) = tmp_path.glob("intacct_singer-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    shipped = {n for n in names if n.startswith("intacct_api/specs/") and n.endswith(".json")}
    assert len(shipped) == len(list((ROOT / "specs").glob("*.json"))) == 19

    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    probe = subprocess.run(
        [sys.executable, "-c", "import intacct_api.specs_location as s; print(s.specs_dir())"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(probe.stdout.strip()).is_relative_to(tmp_path / "site")

    listed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from intacct_api.cli.app import main; main()",
            "operations",
            "list",
            "--application",
            "accounts-receivable",
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    operations = json.loads(listed.stdout)
    assert len(operations) == _spec_operation_count("accounts-receivable") > 100
