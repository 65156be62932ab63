"""What a sink needs from the run it belongs to, and nothing more.

Sinks are built by singer-sdk with the whole target; they keep only this small context: the
shared engine, their stream's mapping, the input position, and the two ways to hand results
on (send a planned batch in the background, or record results known without a request). So a
sink cannot reach into the target, and a test can drive a sink with a context of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from intacct_api.mutate import MutateEngine
from intacct_api.mutate_results import MutateResult

__all__ = ["WriteContext"]


@dataclass(frozen=True)
class WriteContext:
    """The run-wide services one sink uses (all thread-safe)."""

    engine: MutateEngine
    """One engine (and pooled client) for every sink of the run."""
    mapping: Callable[[str], dict[str, Any]]
    """A stream's effective mapping: object, operation, match_on."""
    current_line: Callable[[], int]
    """Input line number of the message being processed."""
    next_index: Callable[[str], int]
    """0-based position of the next record within its stream."""
    submit: Callable[
        [Hashable | None, str, Callable[[], list[MutateResult]], frozenset[Any] | None], None
    ]
    """Send a planned batch in the background: (lane or None, stream, job, records touched)."""
    record: Callable[[str, list[MutateResult]], None]
    """Results known without a request, written after the batches submitted before them."""
    unknown_reason: Callable[[str], str]
    """Why a stream's records cannot be written (it maps to no object)."""
    allow_deletes: bool
    entity: str | None
    batch_size: int
