"""The SDK methods tap-intacct and target-intacct override still exist with the signatures the
overrides were written against, and the documented fallback really gives stock SDK behaviour
(issue 14). The tap's fast paths are also checked message for message against the SDK's own
path in ``tests/tap/test_tap_sync.py``.

When singer-sdk is upgraded and this fails, read the named SDK method again before touching
anything else: the override may now be wrong, not just differently spelled.
"""

from __future__ import annotations

import inspect
import io
from pathlib import Path
from typing import Any

import pytest
from singer_sdk.exceptions import RecordsWithoutSchemaException

from tap_intacct import sdk_overrides as tap_overrides
from target_intacct import sdk_overrides
from target_intacct.sdk_overrides import SDK_OVERRIDES as TARGET_OVERRIDES
from target_intacct.target import TargetIntacct

SDK_OVERRIDES = tap_overrides.SDK_OVERRIDES + TARGET_OVERRIDES


@pytest.mark.parametrize(
    ("sdk_class", "member", "parameters"),
    SDK_OVERRIDES,
    ids=[f"{cls.__name__}.{name}" for cls, name, _ in SDK_OVERRIDES],
)
def test_each_overridden_sdk_member_is_unchanged(
    sdk_class: type, member: str, parameters: str | None
) -> None:
    found = inspect.getattr_static(sdk_class, member, None)
    assert found is not None, f"singer-sdk no longer has {sdk_class.__name__}.{member}"
    if parameters is None:
        assert isinstance(found, property), f"{sdk_class.__name__}.{member} is not a property"
        return
    names = ", ".join(inspect.signature(getattr(sdk_class, member)).parameters)
    assert f"({names})" == parameters, f"{sdk_class.__name__}.{member} changed signature"


@pytest.mark.parametrize("module", [sdk_overrides, tap_overrides], ids=["target", "tap"])
def test_no_private_sdk_method_is_overridden_outside_the_overrides_module(module: Any) -> None:
    """A private SDK method overridden anywhere else in the package would escape the pins."""
    listed = {name for _, name, _ in SDK_OVERRIDES}
    package = Path(module.__file__).parent
    for path in package.glob("*.py"):
        if path.name == "sdk_overrides.py":
            continue
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("def _") and not stripped.startswith("def __"):
                name = stripped[4:].split("(", 1)[0]
                assert name not in _sdk_private_names(), f"{path.name}: {name} overrides the SDK"
    assert listed


def _sdk_private_names() -> set[str]:
    from singer_sdk import Stream, Tap
    from singer_sdk.sinks import BatchSink
    from singer_sdk.target_base import Target

    return {
        name
        for cls in (Target, BatchSink, Stream, Tap)
        for name in dir(cls)
        if name.startswith("_") and not name.startswith("__")
    }


def test_stock_sdk_fallback_gives_the_sdk_s_own_behaviour(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With TARGET_INTACCT_STOCK_SDK, a RECORD before its SCHEMA aborts the load again (the
    SDK's behaviour); without it the same input is one error result."""
    text = (
        '{"type": "RECORD", "stream": "s", "record": {"id": "1"}}\n'
        '{"type": "SCHEMA", "stream": "s", "schema": {"properties": {"id": {"type": "string"}}},'
        ' "key_properties": ["id"]}\n'
    )
    config: dict[str, Any] = {
        "dry_run": True,
        "results_path": str(tmp_path / "results.jsonl"),
        "streams": {"*": {"object": "accounts-payable/vendor"}},
        "on_error": "continue",
    }
    monkeypatch.setattr(sdk_overrides, "STOCK_SDK", True)
    with pytest.raises(RecordsWithoutSchemaException):
        TargetIntacct(config=config).listen(io.StringIO(text))
    monkeypatch.setattr(sdk_overrides, "STOCK_SDK", False)
    TargetIntacct(config=config).listen(io.StringIO(text))
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert "before a corresponding schema" in lines[0]
