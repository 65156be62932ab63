"""The pieces one running emulator is made of, bundled so routes and helpers share them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from intacct_emulator.config import EmulatorConfig
from intacct_emulator.faults import FaultInjector
from intacct_emulator.idempotency import IdempotencyCache
from intacct_emulator.oauth import OAuthServer
from intacct_emulator.stats import RequestStats

if TYPE_CHECKING:
    from intacct_emulator.company import Company


@dataclass
class EmulatorState:
    """Everything `create_app` builds; reachable as `app.state.emulator`.

    `default_refused_fields` is the company's REST-1106 configuration at start, restored on
    reset so run-time `refuse_query_fields` changes do not leak from one test into the next.
    """

    config: EmulatorConfig
    company: Company
    oauth: OAuthServer
    faults: FaultInjector
    stats: RequestStats
    idempotency: IdempotencyCache
    default_refused_fields: dict[str, set[str]] = field(default_factory=dict)

    def effective_refused_fields(self) -> dict[str, list[str]]:
        """The company's current REST-1106 map, JSON-ready."""
        return {k: sorted(v) for k, v in sorted(self.company.refused_query_fields.items())}

    def restore_refused_fields(self) -> None:
        refused = self.company.refused_query_fields
        refused.clear()
        refused.update({k: set(v) for k, v in self.default_refused_fields.items()})


def apply_refused_fields(company: Company, fields: Mapping[str, list[str]]) -> None:
    """Fault hook: set (non-empty list) or clear (empty list) refused fields per object."""
    refused = company.refused_query_fields
    for object_name, names in fields.items():
        if names:
            refused[object_name] = set(names)
        else:
            refused.pop(object_name, None)
