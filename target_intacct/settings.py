"""target-intacct's settings: the one description of them (schema, defaults, help text).

The target's ``config_jsonschema`` is this schema; ``meltano.yml``, the plugin definition and
the README's settings table are generated from it (``scripts/sync_plugin_docs.py``), and
:class:`TargetOptions` reads a config with these very defaults, so no default is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from intacct_api.mutate import DEFAULT_BULK_THRESHOLD, MAX_BATCH_SIZE, OPERATIONS, WRITE_MODES
from intacct_api.mutate_validation import DEFAULT_MAX_STRING_LENGTH
from intacct_api.settings import SHARED_SETTINGS

__all__ = ["TARGET_SETTINGS", "TargetOptions"]

TARGET_SETTINGS: dict[str, Any] = th.PropertiesList(
    *SHARED_SETTINGS.wrapped.values(),
    th.Property(
        "streams",
        th.ObjectType(
            additional_properties=th.ObjectType(
                th.Property("object", th.StringType),
                th.Property("operation", th.StringType, allowed_values=list(OPERATIONS)),
                th.Property("match_on", th.StringType),
                th.Property("operation_id", th.StringType),
            )
        ),
        description=(
            "Per-stream mapping {STREAM: {object, operation, match_on, operation_id}}. "
            "Without it a stream maps by name (`accounts_payable__vendor` or "
            "`accounts-payable/vendor`). The key `*` maps every other stream (catch-all)."
        ),
    ),
    th.Property(
        "operation",
        th.StringType,
        default="upsert",
        allowed_values=list(OPERATIONS),
        description=(
            "Default operation: upsert (a record with `key` is updated; others are matched "
            "on `match_on` in one query per batch, then created or updated), create, "
            "update (needs `key`) or delete (needs `key`)."
        ),
    ),
    th.Property(
        "match_on",
        th.StringType,
        default="id",
        description="Natural-key field upsert looks existing records up by.",
    ),
    th.Property(
        "allow_deletes",
        th.BooleanType,
        default=False,
        description=(
            "Delete records carrying `_sdc_deleted_at` (by `key`). When false they are "
            "reported as `skipped` in the results (not failures) and left in Intacct."
        ),
    ),
    th.Property(
        "batch_size",
        th.IntegerType,
        default=MAX_BATCH_SIZE,
        description="Records per write request (Intacct's limit, 500, is also the cap).",
    ),
    th.Property(
        "write_mode",
        th.StringType,
        default="auto",
        allowed_values=list(WRITE_MODES),
        description=(
            "`batch`: requests of `batch_size` records. `bulk`: Intacct's bulk jobs (one "
            "multipart upload per operation and up to 100,000 records, polled until done; "
            "the same per-record results; results and STATE wait for the job). `auto`: batches "
            "for a stream's first `bulk_threshold` records, bulk jobs for the rest of a "
            "stream that has more (a smaller load is exactly `batch`). With `atomic: true`, "
            "`auto` stays on batches and `bulk` is refused (a job is never all-or-nothing)."
        ),
    ),
    th.Property(
        "bulk_threshold",
        th.IntegerType,
        default=DEFAULT_BULK_THRESHOLD,
        description="`write_mode: auto`: records of a stream after which bulk jobs are used.",
    ),
    th.Property(
        "bulk_poll_timeout_seconds",
        th.NumberType,
        default=3600,
        description=(
            "How long to follow one bulk job; a job still running then leaves its records "
            "`unknown` (a rerun with upsert settles them by look-up, without duplicates)."
        ),
    ),
    th.Property(
        "atomic",
        th.BooleanType,
        default=False,
        description=("Send X-IA-API-Param-Transaction: true, making each request all-or-nothing."),
    ),
    th.Property(
        "on_error",
        th.StringType,
        default="fail",
        allowed_values=["fail", "continue"],
        description=(
            "`fail`: exit non-zero at the end if any record failed (after every batch was "
            "attempted and every result written). `continue`: exit 0 despite failed "
            "records; a failure of the connection itself (login needed, token store, "
            "settings, network) still exits non-zero."
        ),
    ),
    th.Property(
        "dry_run",
        th.BooleanType,
        default=False,
        description=(
            "Validate every record against the request schema of its operation and write "
            "the results without calling the API (upserts validate as creates)."
        ),
    ),
    th.Property(
        "results_path",
        th.StringType,
        description=(
            "JSON-lines file with one result per input record (overwritten per run). "
            "Default: `intacct-results-<UTC timestamp>.jsonl` in the current directory."
        ),
    ),
    th.Property(
        "journal_path",
        th.StringType,
        description=(
            "Write journal (JSON lines) of the Idempotency-Keys whose outcome is not yet "
            "behind a STATE; a rerun after a crash re-sends those requests with the same "
            "keys so Intacct replays instead of writing twice. Removed when a load "
            "completes. Default: `.intacct-journal-<connection>.jsonl` in the results "
            "file's folder. Give concurrent runs their own."
        ),
    ),
    th.Property(
        "max_string_length",
        th.IntegerType,
        default=DEFAULT_MAX_STRING_LENGTH,
        description=(
            "Longest string value accepted (the spec has no maxLength); longer values are "
            "reported as errors instead of being sent."
        ),
    ),
).to_dict()


def _default(name: str) -> Any:
    return TARGET_SETTINGS["properties"][name].get("default")


@dataclass(frozen=True)
class TargetOptions:
    """The target's own settings, read once from a config (defaults from the schema above)."""

    operation: str
    match_on: str
    allow_deletes: bool
    batch_size: int
    atomic: bool
    on_error: str
    dry_run: bool
    results_path: str | None
    journal_path: str | None
    max_string_length: int
    entity: str | None
    write_mode: str
    bulk_threshold: int
    bulk_poll_timeout_seconds: float

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TargetOptions:
        """Options from a plugin config (unset or null values take the schema's defaults)."""

        def pick(name: str) -> Any:
            value = config.get(name)
            return _default(name) if value is None else value

        return cls(
            operation=str(pick("operation")),
            match_on=str(pick("match_on") or "id"),
            allow_deletes=bool(pick("allow_deletes")),
            batch_size=max(1, min(int(pick("batch_size") or MAX_BATCH_SIZE), MAX_BATCH_SIZE)),
            atomic=bool(pick("atomic")),
            on_error=str(pick("on_error")),
            dry_run=bool(pick("dry_run")),
            results_path=config.get("results_path") or None,
            journal_path=config.get("journal_path") or None,
            max_string_length=int(pick("max_string_length") or DEFAULT_MAX_STRING_LENGTH),
            entity=config.get("entity") or None,
            write_mode=str(pick("write_mode")),
            bulk_threshold=max(1, int(pick("bulk_threshold"))),
            bulk_poll_timeout_seconds=float(pick("bulk_poll_timeout_seconds")),
        )
