"""Where things are, for tests in any folder: the repository, the test data, recorded traffic."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository checkout."""
TESTS = ROOT / "tests"
DATA = TESTS / "data"
"""Test inputs (Singer files) and, under ``recorded/``, real recorded Intacct traffic."""
RECORDED = DATA / "recorded"
SPECS = ROOT / "specs"
