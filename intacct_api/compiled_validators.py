"""fastjsonschema validators, compiled once per schema and kept on disk.

Why: ``fastjsonschema.compile`` generates and compiles ~140 KB of Python for an object's
request schema (~25 ms for a customer create); a target pays that for every schema it uses,
at every start. The compiled code object depends only on the schema, the fastjsonschema
version and the Python version, so it is kept (``marshal``) in the user's cache folder under a
digest of exactly those (``intacct_api.disk_cache``, which uses only a folder private to the
user: this is code, trusted as CPython trusts its ``__pycache__``) and loaded in ~0.2 ms.

Both validators of the write path come from here: the target's stream-schema check
(``target_intacct.validation``) and the request-schema check (``mutate_validation``).
"""

from __future__ import annotations

import logging
import marshal
import sys
from collections.abc import Callable, Mapping
from types import CodeType
from typing import Any

import fastjsonschema
import msgspec

from intacct_api.disk_cache import DiskCache

__all__ = ["compiled_validator"]

logger = logging.getLogger(__name__)

_OPTIONS: dict[str, Any] = {"use_default": False, "use_formats": False}
"""No defaults written into records, no format checks (dates are checked where they are
parsed): the same options everywhere, so one cache entry serves both validators."""
_KEEP = 256
"""Entries kept, by last use (~130 KB each): three validators per stream (stream, create and
update schemas), so some 80 streams before one is compiled again."""
_ENTRY = "validate"
"""The name fastjsonschema gives the validator of a schema without ``$id``."""


def compiled_validator(schema: Mapping[str, Any]) -> Callable[[Any], Any]:
    """``fastjsonschema.compile(schema, use_default=False, use_formats=False)``, from the
    disk cache when this schema was compiled before by the same library and Python."""
    try:
        # in the schema's own order: the order of `properties` decides which of two bad
        # members an error names, so two orders are two validators
        text = msgspec.json.encode(schema).decode()
    except TypeError:  # not JSON (a schema built in code): compiled, not cached
        text = None
    if text is None or "$id" in schema:  # fastjsonschema names the function after `$id`
        return fastjsonschema.compile(dict(schema), **_OPTIONS)
    cache = DiskCache("validators", prefix="validator", suffix=".marshal", keep=_KEEP)
    path = cache.path_for(
        {
            "schema": text,
            "options": _OPTIONS,
            "fastjsonschema": fastjsonschema.VERSION,
            "python": sys.version,  # bytecode and the marshal format are per version
        }
    )
    code = _load(cache.read(path))
    if code is None:
        source = fastjsonschema.compile_to_code(dict(schema), **_OPTIONS)
        code = compile(source, "<fastjsonschema>", "exec")
        cache.write(path, marshal.dumps(code))
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - our own generated code (see module docstring)
    validate = namespace.get(_ENTRY)
    if not callable(validate):  # another fastjsonschema naming: correct, only slower
        logger.warning("fastjsonschema %s defines no `%s`", fastjsonschema.VERSION, _ENTRY)
        return fastjsonschema.compile(dict(schema), **_OPTIONS)
    return validate


def _load(data: bytes | None) -> CodeType | None:
    if data is None:
        return None
    try:
        code = marshal.loads(data)  # noqa: S302 - from a folder private to this user
    except (EOFError, ValueError, TypeError) as exc:
        logger.info("cached validator unusable (%s); compiling it again", exc)
        return None
    return code if isinstance(code, CodeType) else None
