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

Trust: entries may hold compiled Python code (request validators), so on POSIX an entry is read
only if its folder and the entry itself belong to this user and nobody else may write to them
(the folder opened without following a symbolic link, the entry opened relative to it, so
nothing can be swapped in between the check and the read). Folders are created 0700, entries
0600, written atomically (a temporary file, then a rename), and each kind keeps its ``keep``
most recently used entries. On Windows the user's profile folder is the protection, as it is
for CPython's ``__pycache__``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import threading
import time
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
    """(absolute path, size, modification time in ns) of each file that exists."""
    stamps = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue
        stamps.append((str(path.resolve()), info.st_size, info.st_mtime_ns))
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
        """The entry's bytes, or None (absent, unreadable, or not private to this user)."""
        if path is None:
            return None
        if not _POSIX:
            try:
                return path.read_bytes()
            except OSError:
                return None
        folder_fd = self._open_folder(create=False)
        if folder_fd is None:
            return None
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder_fd)
        except OSError:
            os.close(folder_fd)
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or not _private(info):
                _warn_once(path, "is not a file private to this user")
                return None
            with open(fd, "rb", closefd=False) as entry:
                data = entry.read()
            os.utime(fd)  # a used entry is a new one: pruning keeps it
            return data
        except OSError:
            return None
        finally:
            os.close(fd)
            os.close(folder_fd)

    def write(self, path: Path | None, data: bytes) -> None:
        """Store an entry atomically; a cache that cannot be written is only logged."""
        if path is None:
            return
        # per process and thread: two threads may derive the same entry at once
        partial = f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        if not _POSIX:
            temporary = path.with_name(partial)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary.write_bytes(data)
                temporary.replace(path)
            except OSError as exc:
                temporary.unlink(missing_ok=True)
                logger.info("cache %s not written (%s); derived again next time", path, exc)
            return
        folder_fd = self._open_folder(create=True)
        if folder_fd is None:
            return
        written = False
        try:
            fd = os.open(partial, _NEW_FILE, 0o600, dir_fd=folder_fd)
            try:
                with open(fd, "wb", closefd=False) as entry:
                    entry.write(data)
            finally:
                os.close(fd)
            os.replace(partial, path.name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
            written = True
            self._prune(folder_fd)
        except OSError as exc:
            logger.info("cache %s not written (%s); derived again next time", path, exc)
        finally:
            if not written:
                _unlink(partial, folder_fd)
            os.close(folder_fd)

    def _open_folder(self, *, create: bool) -> int | None:
        """The folder, opened without following a symbolic link, if it is private to this user
        (every later step goes through this descriptor: nothing can be swapped in between)."""
        folder = self.folder
        if folder is None:
            return None
        try:
            if create:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            if folder.is_symlink():
                _warn_once(folder, "is a symbolic link")
            elif create:
                logger.info("cache folder %s unusable (%s); caching nothing", folder, exc)
            return None
        if not _private(os.fstat(fd)):
            os.close(fd)
            _warn_once(folder, "is not private to this user")
            return None
        return fd

    def _prune(self, folder_fd: int) -> None:
        """Keep the newest ``keep`` entries (by last use), and drop temporary files a killed
        process left (older than an hour)."""
        entries: list[tuple[float, str]] = []
        stale = time.time() - 3600
        for name in os.listdir(folder_fd):
            if not name.startswith(self.prefix + "-"):
                continue
            try:
                mtime = os.stat(name, dir_fd=folder_fd, follow_symlinks=False).st_mtime
            except OSError:
                continue
            if name.endswith(self.suffix):
                entries.append((mtime, name))
            elif name.endswith(".tmp") and mtime < stale:
                _unlink(name, folder_fd)
        entries.sort(reverse=True)
        for _, old in entries[self.keep :]:
            _unlink(old, folder_fd)


_POSIX = os.name == "posix" and os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW")
"""Where the trust rules apply (descriptor-relative, no symbolic links followed). Elsewhere
(Windows) the user's profile folder and its ACLs are the protection, as for ``__pycache__``."""
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
_WARNED: set[str] = set()


def _private(info: os.stat_result) -> bool:
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _warn_once(path: Path, problem: str) -> None:
    if str(path) not in _WARNED:
        _WARNED.add(str(path))
        logger.warning(
            "cache %s %s; not using it (derived again instead: `chmod 700` the folder, or set "
            "%s to another folder or to off)",
            path,
            problem,
            CACHE_DIR_ENV,
        )


def _unlink(name: str, folder_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=folder_fd)
