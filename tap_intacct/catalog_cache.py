"""A disk cache for the catalog ``--discover`` builds from the spec.

Why: Meltano runs ``--discover`` before every ``meltano run`` of an editable (``-e``) install,
and building 523 stream schemas from Sage's OpenAPI files (resolve, narrow, catalog metadata)
takes seconds, the same seconds every time: the result depends only on the spec files, the
tap's code and a few settings. So the catalog text is kept in the user's cache folder under a
key made of exactly those, and printed from there while nothing changed.

What the key covers (anything else cannot change the catalog):

* the versions of this distribution and of singer-sdk;
* every embedded spec file and every ``spec_path`` file (path, size, modification time);
* the source files discovery runs (the tap's and the shared core's schema, spec and record
  modules: path, size, modification time), so an edited checkout never reads a stale catalog;
* the whole config except secrets (the secrets are left out, not hashed).

``schema_source: model`` is never cached: it describes the live company. The setting
``catalog_cache: false`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import platformdirs

from intacct_api.specs_location import embedded_spec_files

__all__ = ["CatalogCache"]

logger = logging.getLogger(__name__)

_SOURCES = (
    "tap_intacct/*.py",
    # what tap_intacct.discovery reads from the shared core
    "intacct_api/spec.py",
    "intacct_api/schema.py",
    "intacct_api/records.py",
    "intacct_api/decimals.py",
    "intacct_api/model_schema.py",
    "intacct_api/specs_location.py",
    "intacct_api/settings.py",
    "intacct_api/pager.py",
)
_KEEP = 8
"""Catalog files kept (several projects or configs on one machine); the oldest go first."""


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _file_stamps(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    stamps = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        stamps.append((str(path), info.st_size, info.st_mtime_ns))
    return stamps


def _spec_path_files(spec_path: Any) -> list[Path]:
    entries = [spec_path] if isinstance(spec_path, str) else list(spec_path or [])
    files: list[Path] = []
    for entry in entries:
        path = Path(str(entry)).expanduser()
        files.extend(sorted(path.glob("*.json")) if path.is_dir() else [path])
    return files


def _source_files() -> list[Path]:
    here = Path(__file__).resolve().parent.parent
    return sorted(p for pattern in _SOURCES for p in here.glob(pattern))


class CatalogCache:
    """The cached catalog text for one config (see module docstring)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        secret_settings: Iterable[str],
        folder: Path | None = None,
    ) -> None:
        secrets = set(secret_settings)
        discovery_config = {k: v for k, v in config.items() if k not in secrets}
        parts = {
            "distribution": _version("intacct-singer"),
            "sdk": _version("singer-sdk"),
            "spec": _file_stamps(embedded_spec_files()),
            "spec_path": _file_stamps(_spec_path_files(config.get("spec_path"))),
            "source": _file_stamps(_source_files()),
            "config": discovery_config,
        }
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
        self.folder = folder or Path(platformdirs.user_cache_dir("tap-intacct"))
        self.path = self.folder / f"catalog-{digest[:32]}.json"

    def read(self) -> str | None:
        """The cached catalog text, or None (absent or unreadable: discover again)."""
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError:
            return None

    def write(self, catalog_text: str) -> None:
        """Store the catalog atomically; a cache that cannot be written is only logged."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(catalog_text, encoding="utf-8")
            partial.replace(self.path)
            self._prune()
        except OSError as exc:
            logger.info("catalog cache not written (%s); discovery is simply not reused", exc)

    def _prune(self) -> None:
        files = sorted(
            self.folder.glob("catalog-*.json"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for old in files[_KEEP:]:
            old.unlink(missing_ok=True)
