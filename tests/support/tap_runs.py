"""Running tap-intacct in-process against a seeded emulator, and reading the Singer messages it
wrote to stdout."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from intacct_emulator.testing import EmulatorServer
from tap_intacct.tap import TapIntacct


def capture(
    tap: TapIntacct, action: Callable[[], object], *, keep_failure: bool = False
) -> tuple[list[dict[str, Any]], Exception | None]:
    """The messages ``action`` (a sync, a dry run) made ``tap`` write, and, with
    ``keep_failure``, the exception that ended it early (a test's "kill": what was written
    so far is what counts); otherwise the exception propagates. The tap is closed."""
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8")
    failure: Exception | None = None
    try:
        with contextlib.redirect_stdout(out):
            try:
                action()
            except Exception as exc:
                if not keep_failure:
                    raise
                failure = exc
            out.flush()
    finally:
        tap.close()
    return [json.loads(line) for line in raw.getvalue().splitlines()], failure


def sync_messages(
    config: dict[str, Any], state: dict | None = None, catalog: dict | None = None
) -> list[dict[str, Any]]:
    """The messages of one complete in-process sync (an error fails the test)."""
    tap = TapIntacct(config=config, state=state, catalog=catalog)
    messages, _ = capture(tap, tap.sync_all)
    return messages


def sync_until_failure(
    config: dict[str, Any], state: dict | None = None
) -> tuple[list[dict[str, Any]], Exception | None]:
    """The messages of one in-process sync and the exception that ended it (None: finished)."""
    tap = TapIntacct(config=config, state=state)
    return capture(tap, tap.sync_all, keep_failure=True)


@contextlib.contextmanager
def seeded_emulator(counts: Mapping[str, int]) -> Iterator[EmulatorServer]:
    """A running emulator with one entity (besides the top level) and ``counts`` records of
    each object, the same records every time (seed 11); stopped on exit."""
    with EmulatorServer() as server:
        server.company.seed(1, 5, objects=["company-config/entity"])
        for name, count in counts.items():
            server.company.seed_object(name, count, 11)
        yield server
