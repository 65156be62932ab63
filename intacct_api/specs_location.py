"""Where the embedded Sage OpenAPI files live.

The wheel ships repo-root ``specs/`` as ``intacct_api/specs`` (hatch force-include), while an
editable install or a source checkout only has ``specs/`` next to the package. Both layouts must
work without configuration, so this module is the single place that knows about them.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["embedded_spec_files", "specs_dir"]


def specs_dir() -> Path:
    """Return the folder holding the embedded ``*.json`` spec files.

    The packaged copy wins because an installed wheel has no repo root; the repo-root copy is the
    fallback for editable installs. Raises FileNotFoundError when neither exists (a broken install
    should fail loudly rather than produce an empty registry).
    """
    packaged = importlib.resources.files("intacct_api") / "specs"
    if packaged.is_dir():
        return Path(str(packaged))
    source_checkout = Path(__file__).resolve().parent.parent / "specs"
    if source_checkout.is_dir():
        return source_checkout
    raise FileNotFoundError(
        "embedded Intacct spec files not found "
        "(looked in intacct_api/specs and the repo-root specs/)"
    )


def embedded_spec_files() -> list[Path]:
    """Return the embedded spec files in a stable (sorted) order so loading is deterministic."""
    return sorted(p for p in specs_dir().glob("*.json") if p.is_file())
