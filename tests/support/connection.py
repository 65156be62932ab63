"""The connection settings a test uses against an emulator: one definition for every test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intacct_emulator.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_USERNAME


def demo_connection(base_url: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """The emulator's demo client (client credentials) at ``base_url``, with a token file of
    the test's own in ``tmp_path``; ``extra`` adds or overrides settings."""
    return {
        "base_url": base_url,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "username": DEFAULT_USERNAME,
        "token_store": str(tmp_path / "tokens.json"),
        **extra,
    }
