"""Files derived from other files, kept in the user's cache folder: one mechanism for every cache.

Why: each tap or target process starts by deriving the same things from the same inputs (the
spec index from Sage's 6 MB of OpenAPI files, request validators compiled from their schemas,
the tap's catalog). Those are pure functions of their inputs, so they are kept on disk under a
key that is a digest of exactly those inputs and read back while nothing changed. A process
that finds nothing (first run, another key, unreadable or unwritable folder) derives the thing
as before, so a cache can only make a start faster, never make it wrong.

Keys: the caller lists what its result depends on; :func:`file_stamps` describes a file by path,
size and modification time (the rule CPython applies to its own ``.pyc`` files), and
:func:`code_stamps` does so for the modules whose code derives the result, so an edited
checkout never reads a stale entry.

Where: ``$INTACCT_CACHE_DIR`` if set (``off`` turns every cache off), else the platform's user
cache folder (``~/.cache/intacct-singer`` on Linux), one subfolder per kind. Deleting it is
always safe.

Trust: entries may hold compiled Python code (request validators), so a folder is used only if
it belongs to this user and nobody else may write to it, the same trust CPython gives its
``__pycache__`` folders. Folders are created 0700, files are written atomically (a temporary
file, then a rename), and each kind keeps its newest ``keep`` entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import platformdirs

__all__ = ["DiskCache", "cache_root", "code_stamps", "file_stamps"]

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "INTACCT_CACHE_DIR"
_OFF = {"off", "0", "false", "no"}
_PACKAGES_ROOT = Path(__file__).resolve().parent.parent


def cache_root() -> Path | None:
    """The folder holding every kind of cache, or None when caching is turned off."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured is not None and configured.strip().lower() in _OFF:
        return None
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir("intacct-singer"))


def file_stamps(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    """(path, size, modification time in ns) of each file that exists."""
    stamps = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        stamps.append((str(path), info.st_size, info.st_mtime_ns))
    return stamps


def code_stamps(*patterns: str) -> list[tuple[str, int, int]]:
    """:func:`file_stamps` of this distribution's source files matching ``patterns`` (globs
    relative to the folder holding ``intacct_api``, e.g. ``"intacct_api/spec.py"``)."""
    return file_stamps(sorted(p for pattern in patterns for p in _PACKAGES_ROOT.glob(pattern)))


def digest(parts: Any) -> str:
    """A stable hex digest of JSON-able ``parts`` (anything else is taken by ``str``)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class DiskCache:
    """One kind of cache: files named ``<prefix>-<digest><suffix>`` in their own subfolder."""

    def __init__(
        self,
        kind: str,
        *,
        prefix: str,
        suffix: str,
        keep: int,
        folder: Path | None = None,
    ) -> None:
        if folder is None:
            root = cache_root()
            folder = None if root is None else root / kind
        self.folder: Path | None = folder
        self.prefix = prefix
        self.suffix = suffix
        self.keep = keep

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def path_for(self, parts: Any) -> Path | None:
        """Where the entry for ``parts`` (what it derives from) lives; None when off."""
        if self.folder is None:
            return None
        return self.folder / f"{self.prefix}-{digest(parts)[:32]}{self.suffix}"

    def read(self, path: Path | None) -> bytes | None:
        """The entry's bytes, or None (absent, unreadable or in a folder others may write)."""
        if path is None or not self._trusted(create=False):
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def write(self, path: Path | None, data: bytes) -> None:
        """Store an entry atomically; a cache that cannot be written is only logged."""
        if path is None:
            return
        try:
            if not self._trusted(create=True):
                return
            # per process and thread: two threads may derive the same entry at once
            partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            partial.write_bytes(data)
            partial.replace(path)
            self._prune()
        except OSError as exc:
            logger.info("cache %s not written (%s); it is derived again next time", path, exc)

    def _trusted(self, *, create: bool) -> bool:
        folder = self.folder
        if folder is None:
            return False
        try:
            if create:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = folder.stat()
        except OSError:
            return False
        others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        foreign = hasattr(os, "getuid") and info.st_uid != os.getuid()
        if foreign or others_write:
            logger.warning(
                "cache folder %s is not private to this user; not using it (chmod 700 it, "
                "or set %s)",
                folder,
                CACHE_DIR_ENV,
            )
            return False
        return True

    def _prune(self) -> None:
        assert self.folder is not None
        entries = []
        for entry in self.folder.glob(f"{self.prefix}-*{self.suffix}"):
            try:
                entries.append((entry.stat().st_mtime, entry))
            except OSError:
                continue
        entries.sort(reverse=True)
        for _, old in entries[self.keep :]:
            old.unlink(missing_ok=True)
