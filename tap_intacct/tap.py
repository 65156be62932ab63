"""tap-intacct: every queryable Sage Intacct object as an incremental Singer stream.

The tap is a thin front end. Schemas come from the shared spec registry (or the live model),
HTTP from the shared ``IntacctClient`` (auth, retries, rate-limit waits, errors) and paging
from the shared ``QueryPager``; this module only wires settings, discovery and streams.
"""

from __future__ import annotations

import gc
import logging
import weakref
from functools import cached_property
from typing import Any

from singer_sdk import Stream
from singer_sdk import typing as th

from intacct_api.client import IntacctClient
from intacct_api.pager import QueryPager
from intacct_api.plugin import IntacctPluginMixin
from intacct_api.process_exit import run_and_exit
from intacct_api.settings import SHARED_SETTINGS
from tap_intacct.catalog_cache import CatalogCache
from tap_intacct.discovery import (
    StreamDefinition,
    catalog_definitions,
    model_definitions,
    operation_definition,
    spec_definitions,
)
from tap_intacct.friendly_errors import people_errors
from tap_intacct.report_settings import BALANCE_SETTINGS
from tap_intacct.report_streams import balance_streams
from tap_intacct.sdk_overrides import TapOverrides
from tap_intacct.selection import DEFAULT_STREAMS
from tap_intacct.settings import TAP_SETTINGS, TapOptions
from tap_intacct.streams import OperationStream, QueryStream
from tap_intacct.writer import RecordBufferedWriter

__all__ = ["TapIntacct"]

ENTITY_OBJECT = "company-config/entity"
ENV_PREFIX = "TAP_INTACCT"
"""Prefix of the settings' environment variables (Meltano's and the SDK's ``--config ENV``)."""


def _config_schema(*parts: th.PropertiesList) -> dict[str, Any]:
    """Merge property lists into one config JSON Schema (later lists win on a clash)."""
    schema: dict[str, Any] = {"type": "object", "properties": {}, "required": []}
    for part in parts:
        piece = part.to_dict()
        schema["properties"].update(piece.get("properties", {}))
        schema["required"].extend(piece.get("required", []))
    if not schema["required"]:
        del schema["required"]
    return schema


class TapIntacct(IntacctPluginMixin, TapOverrides):
    """Singer tap for the Sage Intacct REST API (v1).

    One stream per queryable object of Sage's OpenAPI spec (`accounts_receivable__customer`
    for `accounts-receivable/customer`), records in Intacct's nested shape, incremental on
    `audit.modifiedDateTime` (exposed top-level as `_modified_at`) with keyset paging that
    cannot lose records changing during a run, per-entity state, optional delete detection,
    and Query-by-operationId streams.
    """

    name = "tap-intacct"
    package_name = "intacct-singer"
    """The distribution (not ``tap-intacct``, a different project on PyPI and the Hub): the
    SDK reads ``--about``'s and the log's plugin version from it."""
    dynamic_catalog = True
    message_writer_class = RecordBufferedWriter
    config_jsonschema = _config_schema(SHARED_SETTINGS, TAP_SETTINGS, BALANCE_SETTINGS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.audit_refused = False
        """Set once the audit trail refused us, so the warning is logged once per run."""
        self._entity_ids: list[str] | None = None
        self._entities_resolved = False
        # One INFO line per HTTP request is noise on a long sync (the summary counts them).
        logging.getLogger("httpx").setLevel(logging.WARNING)
        super().__init__(*args, **kwargs)

    # -- shared objects ---------------------------------------------------------------------

    @cached_property
    def options(self) -> TapOptions:
        """The tap settings, parsed once."""
        return TapOptions.from_config(self.config)

    @cached_property
    def client(self) -> IntacctClient:
        """One client for every stream: one pool, one token manager, one concurrency bound.

        The pool is closed when the tap is garbage-collected (or at exit): the SDK's test
        runners and embedders drop taps without any shutdown hook, and an unclosed pool
        would leave sockets to the garbage collector.
        """
        client = IntacctClient(self.connection, registry=self.registry)
        weakref.finalize(self, client.close)
        return client

    def close(self) -> None:
        """Release the HTTP pool (tests and embedders; the CLI process simply exits)."""
        if "client" in self.__dict__:
            self.client.close()

    def entity_ids(self) -> list[str] | None:
        """Entity partitions: None for top level, else the ids (``all`` asks the API once)."""
        if not self._entities_resolved:
            entities = self.options.entities
            if entities == "all":
                pager = QueryPager(
                    self.client, ENTITY_OBJECT, ["id"], entity=None, timestamp_field=None
                )
                self._entity_ids = [str(r["id"]) for r in pager.rows_iter() if r.get("id")]
                self.logger.info(
                    "entities: all -> %d entities: %s",
                    len(self._entity_ids),
                    ", ".join(self._entity_ids),
                )
            else:
                self._entity_ids = list(entities) or None
            self._entities_resolved = True
        return self._entity_ids

    # -- discovery ----------------------------------------------------------------------------

    def stream_definitions(self) -> list[StreamDefinition]:
        """From the input catalog when given (Meltano passes one every run), else discover."""
        options = self.options
        if self.input_catalog is not None:
            return catalog_definitions(self.input_catalog, self.registry, options)
        if options.schema_source == "model":
            found = model_definitions(
                self.registry, options, self.client, workers=self.connection.max_concurrency
            )
        else:
            found = spec_definitions(self.registry, options)
        names = {d.name for d in found}
        for spec in options.operations:
            if spec.name in names:
                raise ValueError(f"operations: stream name {spec.name!r} is already an object")
            found.append(operation_definition(self.registry, spec))
            names.add(spec.name)
        return found

    def discover_streams(self) -> list[Stream]:
        """Instantiate one generated stream per definition.

        Without an ``objects`` setting, only the curated default streams
        (:mod:`tap_intacct.selection`) are selected by default; every other object is in the
        catalog, opt-in. Configured operations and explicitly listed objects are selected.
        """
        curated = not self.options.objects
        streams: list[Stream] = []
        for definition in self.stream_definitions():
            stream: Stream = (
                OperationStream(self, definition)
                if definition.operation
                else QueryStream(self, definition)
            )
            if curated and not definition.operation:
                stream.selected_by_default = definition.name in DEFAULT_STREAMS
            streams.append(stream)
        streams.extend(balance_streams(self))  # opt-in: only those `balance_reports` names
        return streams

    def sync_all(self) -> None:  # type: ignore[misc]  # @final in the SDK; called unchanged
        """The SDK's sync, after a login check; settings problems end it in two log lines.

        The access token is fetched first (it is reused by the first request, so this costs
        nothing): a wrong secret, missing credentials or an unreachable ``base_url`` then stop
        the run before any stream starts, as :mod:`tap_intacct.friendly_errors` describes.
        """
        with people_errors(self.logger, self.config, ENV_PREFIX):
            if any(stream.selected for stream in self.streams.values()):
                self.client.token_provider().access_token()
            # Start-up objects (spec, SDK) are never scanned again by the per-page pass. No
            # collection first: it would walk the whole heap (~40 ms) for little garbage.
            gc.freeze()
            try:
                super().sync_all()
            finally:
                gc.unfreeze()  # an embedding process (tests, an orchestrator) collects them again

    def run_discovery(self) -> str:
        """Print the catalog (see :meth:`_discover`); settings problems in two log lines."""
        with people_errors(self.logger, self.config, ENV_PREFIX):
            return self._discover()

    def _discover(self) -> str:
        """Print the catalog, from the catalog cache when nothing it depends on changed."""
        options = self.options
        if not options.catalog_cache or options.schema_source == "model":
            return super().run_discovery()
        secrets = [
            name
            for name, prop in (self.config_jsonschema.get("properties") or {}).items()
            if prop.get("secret")
        ]
        cache = CatalogCache(self.config, secrets)
        text = cache.read()
        if text is None:
            # The SDK's indented text: Meltano reads discovery output line by line, with a
            # line-length limit that one compact 6 MB line overruns (the run then hangs).
            text = self.catalog_json_text
            cache.write(text)
        else:
            self.logger.info("catalog: reused %s (catalog_cache: false to rebuild)", cache.path)
        print(text)  # the catalog goes to stdout, as in the SDK's run_discovery
        return text


def main() -> None:
    """The ``tap-intacct`` console script: the SDK's command, then a prompt exit
    (:mod:`intacct_api.process_exit`)."""
    run_and_exit(TapIntacct.cli)


if __name__ == "__main__":
    main()
