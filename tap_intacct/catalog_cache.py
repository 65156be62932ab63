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
``catalog_cache: false`` turns the cache off. Where the file lives and when it is trusted is
``intacct_api.disk_cache``'s rule, shared with the spec index and the compiled validators.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from intacct_api.disk_cache import DiskCache, code_stamps, file_stamps
from intacct_api.settings import as_list
from intacct_api.spec import SpecRegistry

__all__ = ["CatalogCache"]

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
            # the registry's own file list: embedded, then `spec_path` (a missing one raises,
            # as discovery would)
            "spec": file_stamps(SpecRegistry.load(as_list(config.get("spec_path"))).files),
            "source": code_stamps(*_SOURCES),
            "config": discovery_config,
        }
        self._cache = DiskCache(
            "catalog", prefix="catalog", suffix=".json", keep=_KEEP, folder=folder
        )
        self.path = self._cache.path_for(parts)

    def read(self) -> str | None:
        """The cached catalog text, or None (absent, unreadable or caching off: discover)."""
        data = self._cache.read(self.path)
        return None if data is None else data.decode("utf-8")

    def write(self, catalog_text: str) -> None:
        """Store the catalog; a cache that cannot be written is only logged."""
        self._cache.write(self.path, catalog_text.encode("utf-8"))
