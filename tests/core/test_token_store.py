"""The token file: permissions, atomic writes, several connections in one file, no leaks."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from intacct_api.errors import InsecureTokenStoreError
from intacct_api.settings import ConnectionSettings
from intacct_api.token_store import TokenSet, TokenStore, token_key

ACCESS = "ACCESS-planted-7d1e"
REFRESH = "REFRESH-planted-22c9"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _tokens(suffix: str = "") -> TokenSet:
    return TokenSet(
        access_token=ACCESS + suffix,
        refresh_token=REFRESH + suffix,
        expires_at=time.time() + 3600,
        grant="authorization_code",
    )


def test_created_0600_in_a_new_0700_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "tokens.json"
    store = TokenStore(path)
    store.save("k", _tokens())
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    loaded = store.load("k")
    assert loaded is not None
    assert loaded.access_token == ACCESS
    assert loaded.refresh_token == REFRESH
    assert loaded.grant == "authorization_code"


def test_stays_0600_after_rewrite_even_with_permissive_umask(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    old = os.umask(0o000)
    try:
        store = TokenStore(path)
        store.save("a", _tokens("1"))
        store.save("a", _tokens("2"))
    finally:
        os.umask(old)
    assert _mode(path) == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_refuses_a_store_readable_by_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "tokens.json"
    store = TokenStore(path)
    store.save("k", _tokens())
    path.chmod(mode)
    with pytest.raises(InsecureTokenStoreError) as info:
        store.load("k")
    message = str(info.value)
    assert str(path) in message
    assert "chmod 600" in message
    assert f"{mode:04o}" in message
    assert ACCESS not in message
    assert REFRESH not in message
    # writing is refused too: we would otherwise carry the leaked file's other keys forward
    with pytest.raises(InsecureTokenStoreError):
        store.save("other", _tokens())
    path.chmod(0o600)
    assert store.load("k") is not None


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = TokenStore(path)
    for i in range(20):
        store.save(f"key{i % 3}", _tokens(str(i)))
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["tokens.json", "tokens.json.lock"]


def test_failed_write_keeps_old_content_and_removes_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tokens.json"
    store = TokenStore(path)
    store.save("k", _tokens("old"))

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.save("k", _tokens("new"))
    monkeypatch.undo()
    loaded = store.load("k")
    assert loaded is not None
    assert loaded.access_token == ACCESS + "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json", "tokens.json.lock"]


def test_several_keys_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    prod = ConnectionSettings(client_id="c1", username=None, token_store=str(path))
    emu = ConnectionSettings(base_url="http://127.0.0.1:8000/ia/api/v1/", client_id="c1")
    cc = ConnectionSettings(client_id="c1", username="ws@ACME|E1")
    keys = {token_key(s) for s in (prod, emu, cc)}
    assert len(keys) == 3
    assert token_key(emu) == "http://127.0.0.1:8000/ia/api/v1|c1|"
    assert token_key(cc).endswith("|c1|ws@ACME|E1")

    store = TokenStore(path)
    for i, key in enumerate(sorted(keys)):
        store.save(key, _tokens(str(i)))
    other = TokenStore(path)  # a second instance (another process would do the same)
    for i, key in enumerate(sorted(keys)):
        loaded = other.load(key)
        assert loaded is not None
        assert loaded.access_token == ACCESS + str(i)
    assert other.keys() == sorted(keys)
    assert other.delete(sorted(keys)[0]) is True
    assert other.delete(sorted(keys)[0]) is False
    assert store.load(sorted(keys)[0]) is None
    assert store.load(sorted(keys)[1]) is not None


def test_repr_hides_tokens(tmp_path: Path) -> None:
    tokens = _tokens()
    store = TokenStore(tmp_path / "tokens.json")
    store.save("k", tokens)
    for text in (repr(tokens), str(tokens), repr(store), repr(store.load("k"))):
        assert ACCESS not in text
        assert REFRESH not in text
    assert "expires_at" in repr(tokens)


def test_missing_file_and_missing_key_load_none(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "nope.json")
    assert store.load("k") is None
    assert not (tmp_path / "nope.json").exists()


def test_corrupt_file_error_names_file_not_content(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'{"tokens": {"k": {"access_token": "' + ACCESS.encode() + b'"')
    os.close(fd)
    with pytest.raises(Exception) as info:
        TokenStore(path).load("k")
    assert str(path) in str(info.value)
    assert ACCESS not in str(info.value)
    assert info.value.__cause__ is None


def test_locked_serialises_threads_and_is_reentrant(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    inside = 0
    overlap = []
    lock_guard = threading.Lock()

    def worker() -> None:
        nonlocal inside
        store = TokenStore(path)  # separate instances still share one in-process lock
        with store.locked():
            with lock_guard:
                inside += 1
                overlap.append(inside)
            store.save("k", _tokens())  # re-entrant: save takes the lock again
            time.sleep(0.01)
            with lock_guard:
                inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(overlap) == 1
    assert len(overlap) == 8
