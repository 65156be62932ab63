"""The disk caches (``intacct_api.disk_cache``): the spec index, compiled validators, the catalog.

A cache may only make a start faster: what is read back must equal what would have been
derived, a changed input must be derived again, a damaged entry must be ignored, and a folder
others may write to must never be read (the validators are code).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from intacct_api import compiled_validators, spec_cache
from intacct_api.compiled_validators import compiled_validator
from intacct_api.disk_cache import CACHE_DIR_ENV, DiskCache
from intacct_api.spec import SpecRegistry
from intacct_api.specs_location import embedded_spec_files
from tap_intacct.catalog_cache import CatalogCache


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    return folder


def _index_files(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "spec-index").glob("index-*.msgpack"))


def _decoded(registry: SpecRegistry) -> list[str]:
    """Names of the spec files this registry has decoded so far."""
    return [source.name for source in registry.sources if source._resolver is not None]


def _cache(folder: Path, keep: int = 4) -> DiskCache:
    return DiskCache("kind", prefix="entry", suffix=".bin", keep=keep, folder=folder)


def _entry(cache: DiskCache, n: int) -> Path:
    path = cache.path_for({"n": n})
    assert path is not None
    return path


def _aged(cache: DiskCache, count: int) -> list[Path]:
    """``count`` entries written, the first the oldest (modification times 1000, 1001, ...)."""
    paths = [_entry(cache, n) for n in range(count)]
    for n, path in enumerate(paths):
        cache.write(path, b"x")
        os.utime(path, (1000 + n, 1000 + n))
    return paths


# -- the spec index ----------------------------------------------------------------------------


def test_spec_index_read_back_equals_the_index_built_from_the_files(cache_dir: Path) -> None:
    built = SpecRegistry.load()
    assert not _index_files(cache_dir)
    assert built.objects  # built from the files, then stored
    assert len(_index_files(cache_dir)) == 1
    assert sorted(_decoded(built)) == sorted(p.name for p in embedded_spec_files())

    cached = SpecRegistry.load()
    assert len(cached.objects) == len(built.objects) == 529
    assert _decoded(cached) == []  # read from the cache: no file decoded for the index

    assert list(cached.operations) == list(built.operations)  # same order (later file wins)
    for op_id, op in built.operations.items():
        again = cached.operations[op_id]
        assert again == op  # every field, parameters and their schemas included
        assert again.source_file == op.source_file
        assert again.spec_path == op.spec_path
        assert again.request_schema() == op.request_schema(), op_id
        assert again.request_body_required() == op.request_body_required(), op_id
        assert again.response_schema() == op.response_schema(), op_id
        assert again.result_schema_name() == op.result_schema_name(), op_id
    assert list(cached.objects) == list(built.objects)
    for name, info in built.objects.items():
        again = cached.objects[name]
        assert again == info  # owners, owned lists, required fields, operation ids
        assert again.record_schema() == info.record_schema(), name
        assert again.has_modified_timestamp == info.has_modified_timestamp, name
        assert again.owner_property == info.owner_property, name


def test_a_lookup_from_the_cached_index_decodes_only_the_file_it_needs(cache_dir: Path) -> None:
    assert SpecRegistry.load().objects  # builds and stores the index
    registry = SpecRegistry.load()
    info = registry.object("accounts-receivable/customer")
    assert registry.operation(str(info.create_operation_id)).request_schema()
    assert info.record_schema()["properties"]["id"]
    assert _decoded(registry) == ["accounts-receivable.json"]


def test_a_changed_extra_spec_file_builds_the_index_again(cache_dir: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.json"
    shutil.copy(embedded_spec_files()[0], extra)
    document = json.loads(extra.read_text())
    first = SpecRegistry.load([extra])
    first_ids = set(first.operations)

    item = next(iter(document["paths"].values()))
    method = next(m for m in ("get", "post", "patch", "delete") if m in item)
    item[method] = {**item[method], "operationId": "added-by-the-test"}
    extra.write_text(json.dumps(document))
    os.utime(extra, ns=(1, 1))  # a new size and time: the cache key changes

    second = SpecRegistry.load([extra])
    assert "added-by-the-test" in second.operations
    assert "added-by-the-test" not in first_ids
    assert second.source_of("added-by-the-test") == "extra.json"
    assert len(_index_files(cache_dir)) == 2  # one entry per set of files


def test_a_damaged_index_entry_is_built_again_and_replaced(cache_dir: Path) -> None:
    expected = SpecRegistry.load().objects
    (entry,) = _index_files(cache_dir)
    entry.write_bytes(entry.read_bytes()[:1000])  # truncated, e.g. by a full disk

    registry = SpecRegistry.load()
    assert registry.objects == expected
    assert _decoded(registry)  # built from the files
    assert spec_cache.load(registry.sources) is not None  # and the entry is whole again


def test_cache_dir_off_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    registry = SpecRegistry.load()
    assert len(registry.objects) == 529
    assert compiled_validator({"type": "object"})({}) == {}
    assert not (tmp_path / "xdg").exists()


def test_a_folder_others_may_write_is_never_read_or_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "shared"
    cache = _cache(folder)
    path = _entry(cache, 1)
    cache.write(path, b"mine")
    assert cache.read(path) == b"mine"
    assert folder.stat().st_mode & 0o777 == 0o700

    folder.chmod(0o777)  # e.g. a cache folder on a shared volume
    assert cache.read(path) is None
    cache.write(_entry(cache, 2), b"other")
    assert sorted(p.name for p in folder.iterdir()) == [path.name]
    assert "not private to this user" in caplog.text


def test_each_kind_keeps_its_newest_entries(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "c", keep=2)
    paths = _aged(cache, 4)
    cache.write(paths[3], b"y")  # prunes after writing
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(p.name for p in paths[2:])


# -- compiled validators -----------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "maxLength": 5, "pattern": "^C"},
        "amount": {"type": ["number", "null"], "minimum": 0},
        "lines": {"type": "array", "items": {"type": "object", "required": ["glAccount"]}},
    },
    "additionalProperties": False,
}
BODIES: list[Any] = [
    {"id": "C1", "amount": 3.5, "lines": [{"glAccount": "1000"}]},
    {"id": "C1", "amount": None},
    {"id": "X1"},  # pattern
    {"id": "C123456"},  # maxLength
    {"amount": -1},
    {"lines": [{}]},  # a line without its required member
    {"other": 1},  # additionalProperties
    [],
]


def _verdicts(validate: Any) -> list[str]:
    out = []
    for body in BODIES:
        try:
            validate(body)
            out.append("ok")
        except fastjsonschema.JsonSchemaValueException as exc:
            out.append(f"{exc.name}: {exc.message}")
    return out


def test_a_cached_validator_judges_exactly_as_fastjsonschema_compile(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _verdicts(fastjsonschema.compile(SCHEMA, use_default=False, use_formats=False))
    assert expected.count("ok") == 2

    assert _verdicts(compiled_validator(SCHEMA)) == expected  # compiled, then stored
    assert len(list((cache_dir / "validators").glob("validator-*.marshal"))) == 1

    def no_compiling(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("compiled again although the cache holds it")

    monkeypatch.setattr(compiled_validators.fastjsonschema, "compile_to_code", no_compiling)
    assert _verdicts(compiled_validator(SCHEMA)) == expected  # loaded from the cache


def test_a_damaged_validator_entry_is_compiled_again(cache_dir: Path) -> None:
    expected = _verdicts(compiled_validator(SCHEMA))
    (entry,) = (cache_dir / "validators").glob("validator-*.marshal")
    entry.write_bytes(b"\x00garbage")
    assert _verdicts(compiled_validator(SCHEMA)) == expected
    assert entry.read_bytes() != b"\x00garbage"


# -- the tap's catalog -------------------------------------------------------------------------


def test_catalog_cache_key_leaves_secrets_out_and_follows_the_config(cache_dir: Path) -> None:
    config = {"client_id": "a", "client_secret": "s3cret", "start_date": "2024-01-01"}
    cache = CatalogCache(config, ["client_secret"])
    assert cache.read() is None
    cache.write('{"streams": []}')
    assert CatalogCache(config, ["client_secret"]).read() == '{"streams": []}'
    # a new secret is the same catalog; another setting is another catalog
    assert CatalogCache({**config, "client_secret": "new"}, ["client_secret"]).read()
    assert CatalogCache({**config, "start_date": "2025-01-01"}, ["client_secret"]).read() is None
    assert cache.path is not None
    assert cache.path.parent == cache_dir / "catalog"
    assert "s3cret" not in cache.path.name


def test_a_missing_spec_file_is_reported_even_when_the_others_are_cached(
    cache_dir: Path, tmp_path: Path
) -> None:
    files = embedded_spec_files()
    assert SpecRegistry(files).objects  # the embedded files' index is cached
    gone = tmp_path / "removed.json"
    with pytest.raises(FileNotFoundError):
        SpecRegistry([*files, gone]).objects  # noqa: B018 - the lookup is what raises


def test_a_spec_file_changed_under_a_running_process_is_an_error_not_another_schema(
    cache_dir: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "extra.json"
    shutil.copy(embedded_spec_files()[0], extra)
    assert SpecRegistry.load([extra]).objects  # built and cached
    registry = SpecRegistry.load([extra])  # the index from the cache, nothing decoded yet
    some_op = next(op for op in registry.operations.values() if op.source_file == "extra.json")
    extra.write_text(json.dumps({"openapi": "3.0.0", "paths": {}, "components": {}}))
    with pytest.raises(RuntimeError, match="changed while this process was running"):
        some_op.request_schema()


def test_a_spec_value_msgpack_cannot_hold_is_built_but_not_cached(
    cache_dir: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "huge.json"
    document = json.loads(embedded_spec_files()[0].read_text())
    item = next(iter(document["paths"].values()))
    params = item.setdefault("parameters", [])
    params.append({"name": "huge", "in": "query", "schema": {"maximum": 10**30}})
    extra.write_text(json.dumps(document))
    registry = SpecRegistry.load([extra])
    assert registry.operations  # built: the cache is only skipped
    assert not _index_files(cache_dir)


def test_the_index_key_follows_the_code_that_builds_it(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = SpecRegistry.load().sources
    _, before, _ = spec_cache._entry(sources)
    monkeypatch.setattr(spec_cache, "code_stamps", lambda *p: [("spec.py", 1, 2)])
    _, after, _ = spec_cache._entry(sources)
    assert before != after


def test_a_symbolic_link_is_never_followed_into_a_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    real = tmp_path / "real"
    cache = _cache(real)
    path = _entry(cache, 1)
    cache.write(path, b"mine")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    through_link = _cache(link)
    assert through_link.read(link / path.name) is None  # the folder is a link
    assert "is a symbolic link" in caplog.text

    (real / "entry-linked.bin").symlink_to(path)  # an entry that is a link
    assert cache.read(real / "entry-linked.bin") is None
    assert cache.read(path) == b"mine"


@pytest.mark.parametrize("mode", [0o770, 0o720, 0o702])
def test_group_or_other_write_permission_on_the_folder_or_entry_refuses_it(
    tmp_path: Path, mode: int
) -> None:
    folder = tmp_path / "c"
    cache = _cache(folder)
    path = _entry(cache, 1)
    cache.write(path, b"mine")
    assert path.stat().st_mode & 0o777 == 0o600
    path.chmod(0o600 | (mode & 0o022))
    assert cache.read(path) is None  # the entry
    path.chmod(0o600)
    folder.chmod(mode)
    assert cache.read(path) is None  # the folder
    folder.chmod(0o700)
    assert cache.read(path) == b"mine"


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    cache = _cache(folder)
    path = _entry(cache, 1)
    folder.mkdir(mode=0o700)
    path.mkdir()  # the rename onto it fails
    (path / "occupied").write_text("x")
    cache.write(path, b"data")
    assert sorted(p.name for p in folder.iterdir()) == [path.name]


def test_entries_in_use_survive_pruning(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "c", keep=2)
    first, second = _aged(cache, 2)
    assert cache.read(first) == b"x"  # used: now the newest
    cache.write(_entry(cache, 2), b"y")  # a third entry: one of the first two goes
    assert first.exists()
    assert not second.exists()


def test_a_schema_with_an_id_or_another_property_order_gets_its_own_validator(
    cache_dir: Path,
) -> None:
    with_id = {**SCHEMA, "$id": "https://example.com/customer.json"}
    expected = _verdicts(fastjsonschema.compile(with_id, use_default=False, use_formats=False))
    assert _verdicts(compiled_validator(with_id)) == expected

    both_bad = {"a": "x", "b": "y"}
    ab = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}
    ba = {"type": "object", "properties": {"b": {"type": "integer"}, "a": {"type": "integer"}}}
    names = []
    for schema in (ab, ba):
        with pytest.raises(fastjsonschema.JsonSchemaValueException) as caught:
            compiled_validator(schema)(both_bad)
        names.append(caught.value.name)
    assert names == ["data.a", "data.b"]  # as a fresh compile of each would name them


def test_catalog_cache_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, "off")
    cache = CatalogCache({"client_id": "a"}, [])
    cache.write("{}")
    assert cache.path is None
    assert cache.read() is None
