"""What the tap and the target both derive from their Singer config: the connection and the spec.

Both plugins read the same connection keys (`intacct_api.settings`) and the same registry
(embedded spec plus `spec_path`); this mixin is that one derivation, so the two front ends
cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from intacct_api.settings import ConnectionSettings
from intacct_api.spec import SpecRegistry, default_registry


class IntacctPluginMixin:
    """Mixed into `TapIntacct` and `TargetIntacct` (which provide `config`)."""

    config: Mapping[str, Any]

    @cached_property
    def connection(self) -> ConnectionSettings:
        """Connection settings from the plugin config (secrets stay out of repr and logs)."""
        return ConnectionSettings.from_config(self.config)

    @cached_property
    def registry(self) -> SpecRegistry:
        """The spec registry: the embedded spec plus any `spec_path` additions."""
        return default_registry(tuple(self.connection.spec_path))
