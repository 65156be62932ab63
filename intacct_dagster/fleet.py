"""The fleet file: which Intacct companies to sync, with which credentials, into which target.

One YAML file describes the whole fleet, so adding a company is one entry, not new code. It
holds no secret: each company names the environment variable its client secret lives in
(``client_secret_env``), which a secret store (Kubernetes secrets, Vault agent, Dagster+
secrets) fills in on the worker. Everything here is plain data, importable without Dagster.

Example (``fleet/fleet.example.yml`` is a complete one)::

    state_url_env: FLEET_STATE_URL          # PostgreSQL: Meltano's system database (state)
    meltano_executable: meltano             # runs each partition (`meltano el`)
    target:
      executable: target-postgres
      config: {batch_size_rows: 500}
      url_env: FLEET_WAREHOUSE_URL          # put into the target config as sqlalchemy_url
      schema_per_company: true              # default_target_schema = company name
    stream_groups:
      masters: [accounts-receivable/customer, accounts-payable/vendor]
      ledger: [general-ledger/journal-entry-line]
    defaults: {tier: 8, parallel_groups: 2, schedule: "0 2 * * *"}
    companies:
      - name: acme
        base_url: https://api.intacct.com/ia/api/v1
        client_id: acme-client
        client_secret_env: ACME_INTACCT_SECRET
        username: svc@ACME
        entities: []
        groups: [masters, ledger]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""Company and group names become Dagster partition keys, op names and PostgreSQL schemas."""


class FleetError(ValueError):
    """The fleet file is wrong; the message names the entry and the key."""


@dataclass(frozen=True)
class Company:
    """One Intacct company (tenant) of the fleet.

    ``tier`` is the company's Intacct concurrency tier (requests in flight at once, 6-20 on
    the published tiers); ``parallel_groups`` is how many of its stream groups may run at
    once across all workers. Each running group's tap gets ``tier // parallel_groups``
    requests, so the company's total stays within its tier whatever the scheduling.
    """

    name: str
    base_url: str
    client_id: str
    client_secret_env: str
    username: str
    groups: tuple[str, ...]
    entities: tuple[str, ...] = ()
    tier: int = 8
    parallel_groups: int = 2
    schedule: str | None = None
    tap_config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def per_group_concurrency(self) -> int:
        """Requests in flight one group's tap may have (at least 1)."""
        return max(1, self.tier // self.parallel_groups)

    def client_secret(self) -> str:
        """The secret, read from the environment at run time (never stored, never logged).

        The runner only checks it is there: Meltano reads it from ``client_secret_env``."""
        secret = os.environ.get(self.client_secret_env)
        if not secret:
            raise FleetError(
                f"company {self.name}: environment variable {self.client_secret_env} "
                "(client_secret_env) is not set"
            )
        return secret


@dataclass(frozen=True)
class TargetSpec:
    """The Singer target every company loads into (one executable, one config per company)."""

    executable: str
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    url_env: str | None = None
    url_setting: str = "sqlalchemy_url"
    schema_per_company: bool = True

    def config_for(self, company: Company) -> dict[str, Any]:
        """The target config for one company: shared settings, its own schema, and the URL as
        a reference to its environment variable (``${FLEET_WAREHOUSE_URL}``), which Meltano
        expands when it runs the target: the URL is never written into the project."""
        config = dict(self.config)
        if self.schema_per_company:
            config["default_target_schema"] = company.name
        if self.url_env:
            if not os.environ.get(self.url_env):
                raise FleetError(f"target: environment variable {self.url_env} is not set")
            config[self.url_setting] = "${" + self.url_env + "}"
        return config


@dataclass(frozen=True)
class Fleet:
    """The parsed fleet file."""

    companies: tuple[Company, ...]
    stream_groups: dict[str, tuple[str, ...]] = field(hash=False, compare=False)
    target: TargetSpec
    state_url_env: str
    tap_executable: str = "tap-intacct"
    meltano_executable: str = "meltano"
    load: LoadSpec | None = None

    def company(self, name: str) -> Company:
        for company in self.companies:
            if company.name == name:
                return company
        raise KeyError(name)

    def state_url(self) -> str:
        """The PostgreSQL URL of Meltano's system database and the fleet's tables (from the
        environment); ``postgresql://`` or SQLAlchemy's ``postgresql+psycopg://``."""
        url = os.environ.get(self.state_url_env)
        if not url:
            raise FleetError(f"state_url_env: environment variable {self.state_url_env} not set")
        return url


@dataclass(frozen=True)
class LoadSpec:
    """The reverse direction: warehouse rows -> target-intacct, per company.

    ``tables`` maps an Intacct object (``accounts-payable/vendor``) to the warehouse table
    holding the rows to write, looked up in the company's schema (``schema_per_company``) or
    ``schema``; ``results_dir`` is where each company's per-record results files go.
    """

    tables: dict[str, str] = field(hash=False, compare=False)
    url_env: str
    results_dir: str
    target_executable: str = "target-intacct"
    schema: str | None = None
    target_config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise FleetError(f"{where}: {value!r} must be lower-case letters, digits and _")
    return value


def _require(raw: dict[str, Any], key: str, where: str) -> Any:
    if raw.get(key) in (None, ""):
        raise FleetError(f"{where}: {key} is required")
    return raw[key]


def parse_fleet(raw: dict[str, Any]) -> Fleet:
    """Validate a fleet mapping (the YAML document) and build the Fleet."""
    groups_raw = _require(raw, "stream_groups", "fleet")
    groups = {
        _name(name, "stream_groups"): tuple(str(obj) for obj in objects)
        for name, objects in groups_raw.items()
    }
    defaults = dict(raw.get("defaults") or {})
    companies: list[Company] = []
    for index, entry in enumerate(_require(raw, "companies", "fleet")):
        where = f"companies[{index}]"
        merged = {**defaults, **entry}
        if "client_secret" in merged:
            raise FleetError(
                f"{where}: put the secret in an environment variable and name it in "
                "client_secret_env; the fleet file must not hold secrets"
            )
        name = _name(merged.get("name"), where)
        chosen = tuple(merged.get("groups") or groups)
        unknown = [group for group in chosen if group not in groups]
        if unknown:
            raise FleetError(f"company {name}: unknown stream group(s) {unknown}")
        company = Company(
            name=name,
            base_url=str(_require(merged, "base_url", name)),
            client_id=str(_require(merged, "client_id", name)),
            client_secret_env=str(_require(merged, "client_secret_env", name)),
            username=str(_require(merged, "username", name)),
            groups=chosen,
            entities=tuple(merged.get("entities") or ()),
            tier=int(merged.get("tier", 8)),
            parallel_groups=int(merged.get("parallel_groups", 2)),
            schedule=merged.get("schedule"),
            tap_config=dict(merged.get("tap_config") or {}),
        )
        if company.tier < 1 or company.parallel_groups < 1:
            raise FleetError(f"company {name}: tier and parallel_groups must be at least 1")
        companies.append(company)
    if len({c.name for c in companies}) != len(companies):
        raise FleetError("companies: duplicate name")
    target_raw = dict(_require(raw, "target", "fleet"))
    target = TargetSpec(
        executable=str(_require(target_raw, "executable", "target")),
        config=dict(target_raw.get("config") or {}),
        url_env=target_raw.get("url_env"),
        url_setting=str(target_raw.get("url_setting", "sqlalchemy_url")),
        schema_per_company=bool(target_raw.get("schema_per_company", True)),
    )
    load = None
    if raw.get("load"):
        load_raw = dict(raw["load"])
        load = LoadSpec(
            tables={str(k): str(v) for k, v in _require(load_raw, "tables", "load").items()},
            url_env=str(_require(load_raw, "url_env", "load")),
            results_dir=str(_require(load_raw, "results_dir", "load")),
            target_executable=str(load_raw.get("target_executable", "target-intacct")),
            schema=load_raw.get("schema"),
            target_config=dict(load_raw.get("target_config") or {}),
        )
    return Fleet(
        companies=tuple(companies),
        stream_groups=groups,
        target=target,
        state_url_env=str(_require(raw, "state_url_env", "fleet")),
        tap_executable=str(raw.get("tap_executable", "tap-intacct")),
        meltano_executable=str(raw.get("meltano_executable", "meltano")),
        load=load,
    )


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet YAML file."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise FleetError(f"{path}: expected a mapping at the top")
    return parse_fleet(data)
