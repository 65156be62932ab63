"""The JSON token file shared by the tap, the target and the `intacct` CLI.

Why a file and not config write-back: Meltano launches the tap and the target as separate
processes, and Intacct may rotate the refresh token on every refresh. Whoever refreshes must
persist the new refresh token where every other process will find it, under a lock all of them
honour; otherwise the second process refreshes with an already-rotated token and the user has
to log in again. One file holds several token sets (one per base URL + client + user), so one
lock covers every connection of the user.

Why so strict about permissions: the file holds long-lived refresh tokens. It is created 0600
(inside a 0700 folder when we create the folder), written atomically so a crash or a reader in
another process never sees half a file, and refused outright when group/other can read it,
because quietly using a leaked token store would hide the leak.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filelock

from intacct_api.errors import InsecureTokenStoreError, IntacctError

if TYPE_CHECKING:
    from intacct_api.settings import ConnectionSettings

FILE_MODE = 0o600
DIR_MODE = 0o700
_FORMAT_VERSION = 1


@dataclass
class TokenSet:
    """One OAuth grant's tokens plus the timing needed to decide when to refresh.

    `obtained_at` lets the auth layer decide whether tokens from the config file are newer than
    the stored ones; `grant` records how the chain started (shown by `intacct token`). Tokens
    are excluded from `repr` so a logged TokenSet cannot leak them.
    """

    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret
    scope: str | None = None
    obtained_at: float = field(default_factory=time.time)
    grant: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form used in the store file."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenSet:
        """Read one stored entry, tolerating missing or unknown keys from other versions."""

        def opt_float(name: str) -> float | None:
            value = data.get(name)
            return None if value is None else float(value)

        obtained = opt_float("obtained_at")
        return cls(
            access_token=data.get("access_token"),
            refresh_token=data.get("refresh_token"),
            expires_at=opt_float("expires_at"),
            token_type=str(data.get("token_type") or "Bearer"),
            scope=data.get("scope"),
            obtained_at=obtained if obtained is not None else 0.0,
            grant=data.get("grant"),
        )

    def expires_in(self, now: float | None = None) -> float | None:
        """Seconds until the access token expires (negative when expired; None if unknown)."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)


def token_key(settings: ConnectionSettings) -> str:
    """Key of one token set in the store: `base_url|client_id|username`.

    The same client may be used against production and the emulator, and with several
    client-credentials users; each combination gets its own tokens.
    """
    return f"{settings.base_url}|{settings.client_id or ''}|{settings.username or ''}"


# One in-process lock per store file, shared by every TokenStore instance for that file:
# filelock alone does not order threads that hold separate TokenStore objects.
_PROCESS_LOCKS: dict[str, tuple[threading.RLock, filelock.BaseFileLock]] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def _locks_for(path: Path) -> tuple[threading.RLock, filelock.BaseFileLock]:
    key = str(path)
    with _PROCESS_LOCKS_GUARD:
        locks = _PROCESS_LOCKS.get(key)
        if locks is None:
            # thread_local=False: the RLock already confines the file lock to one thread at a
            # time, and a thread-local counter would break nested acquisition bookkeeping.
            file_lock = filelock.FileLock(f"{key}.lock", mode=FILE_MODE, thread_local=False)
            locks = (threading.RLock(), file_lock)
            _PROCESS_LOCKS[key] = locks
        return locks


class TokenStore:
    """Several TokenSets in one JSON file, keyed by `token_key(settings)`.

    Reads need no lock (writes are atomic renames); read-modify-write sequences such as a
    refresh must run inside `locked()` so that only one thread of one process refreshes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(os.path.expanduser(str(path))).absolute()
        self._thread_lock, self._file_lock = _locks_for(self.path)

    def __repr__(self) -> str:
        return f"TokenStore(path={str(self.path)!r})"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store exclusively: threads of this process and other processes.

        Re-entrant in the holding thread, so `save` inside a locked block does not deadlock.
        """
        with self._thread_lock:
            self._ensure_parent()
            with self._file_lock:
                yield

    def load(self, key: str) -> TokenSet | None:
        """The token set stored under `key`, or None."""
        entry = self._read_all().get(key)
        if not isinstance(entry, Mapping):
            return None
        return TokenSet.from_dict(entry)

    def save(self, key: str, tokens: TokenSet) -> None:
        """Store `tokens` under `key`, keeping every other key (atomic replace, mode 0600)."""
        with self.locked():
            entries = self._read_all()
            entries[key] = tokens.to_dict()
            self._write_all(entries)

    def delete(self, key: str) -> bool:
        """Remove the tokens under `key` (logout). True when something was removed."""
        with self.locked():
            entries = self._read_all()
            if key not in entries:
                return False
            del entries[key]
            self._write_all(entries)
            return True

    def keys(self) -> list[str]:
        """Keys present in the store (for status listings; keys hold no secrets)."""
        return sorted(self._read_all())

    # -- file handling ---------------------------------------------------------------------

    def _check_permissions(self, mode: int) -> None:
        """Refuse a store that group/other can access: its refresh tokens may already leak."""
        if os.name == "nt":  # POSIX mode bits mean nothing there; NTFS ACLs protect the profile
            return
        if mode & 0o077:
            raise InsecureTokenStoreError(
                f"Token store {self.path} is accessible by other users "
                f"(mode {stat.S_IMODE(mode):04o}); it holds OAuth refresh tokens. "
                f"Run `chmod 600 {self.path}` (and consider revoking the tokens with "
                "`intacct logout`), then try again."
            )

    def _read_all(self) -> dict[str, Any]:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return {}
        with os.fdopen(fd, "rb") as handle:
            self._check_permissions(os.fstat(handle.fileno()).st_mode)
            raw = handle.read()
        if not raw.strip():
            return {}
        try:
            document = json.loads(raw)
        except ValueError:
            # `from None`: the decode error object carries the whole document (tokens).
            raise IntacctError(
                f"Token store {self.path} is not valid JSON; remove it and run `intacct login`."
            ) from None
        if not isinstance(document, dict):
            return {}
        tokens = document.get("tokens", {})
        return dict(tokens) if isinstance(tokens, dict) else {}

    def _write_all(self, entries: Mapping[str, Any]) -> None:
        self._ensure_parent()
        document = {"version": _FORMAT_VERSION, "tokens": dict(entries)}
        data = json.dumps(document, indent=2, sort_keys=True).encode()
        tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp")
        # O_EXCL + 0600 from birth: the secrets are never readable by others, not even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _ensure_parent(self) -> None:
        parent = self.path.parent
        if not parent.exists():
            parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            with contextlib.suppress(OSError):
                os.chmod(parent, DIR_MODE)
