"""docs/FIDELITY.md stays honest: every row names a source and a test that exists, and every
"assumed" row is listed as an open question."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support.paths import ROOT

LEDGER = ROOT / "docs" / "FIDELITY.md"
ROW = re.compile(r"^\| ([A-Z]\d+) \|")
TEST_REF = re.compile(r"`(test_[a-z0-9_]+\.py)::(test_[a-z0-9_]+)(?:\[[^\]]+\])?`")


def _rows() -> list[list[str]]:
    rows = []
    ledger = LEDGER.read_text().split("## Open questions", 1)[0]
    for line in ledger.splitlines():
        if ROW.match(line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_every_row_names_its_source_and_an_existing_test() -> None:
    rows = _rows()
    assert len(rows) >= 40
    for row in rows:
        ident, _behaviour, _real, source, _emulator, test = row[:6]
        assert source not in ("", "—"), f"{ident} has no source"
        refs = TEST_REF.findall(test)
        assert refs, f"{ident} names no test"
        for file_name, name in refs:
            (path,) = (ROOT / "tests").rglob(file_name)  # test files are unique by name
            assert name in _test_names(path), f"{ident}: {name} missing"


def test_every_assumed_row_is_an_open_question() -> None:
    text = LEDGER.read_text()
    questions = text.split("## Open questions", 1)[1]
    for row in _rows():
        if "assumed" in row[3]:
            assert re.search(rf"\| Q\d+ \| {row[0]} \|", questions), f"{row[0]} not listed"
