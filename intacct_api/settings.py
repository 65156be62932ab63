"""Connection settings shared by the tap, the target and the `intacct` CLI.

One definition of every connection-level setting lives here so that the three front ends
accept the same names, the same defaults and the same secret markings. The tap and the target
append their own settings to `SHARED_SETTINGS`; the CLI builds a `ConnectionSettings` from flags,
environment variables and an optional config file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from intacct_api import __version__

if TYPE_CHECKING:
    from singer_sdk import typing as th

DEFAULT_BASE_URL = "https://api.intacct.com/ia/api/v1"
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_MAX_RETRIES = 5
DEFAULT_TIMEOUT = 60.0


def default_token_store_path() -> str:
    """The token file both the tap and the target use unless told otherwise.

    A per-user location (not the project folder) so that a tap and a target launched from
    different working directories by Meltano still share one store and one lock.
    """
    return str(Path(platformdirs.user_config_dir("intacct")) / "tokens.json")


def as_list(value: Any) -> list[str]:
    """Accept a list, a JSON-ish comma string or None for list-valued settings."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value]


@dataclass
class ConnectionSettings:
    """Everything needed to reach one Intacct company as one user.

    Secrets are excluded from `repr` so that logging a settings object can never leak them.
    """

    base_url: str = DEFAULT_BASE_URL
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    username: str | None = None
    access_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_store: str | None = None
    entity: str | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout: float = DEFAULT_TIMEOUT
    max_retry_wait: float = 300.0
    spec_path: list[str] = field(default_factory=list)
    user_agent: str = f"intacct-singer/{__version__}"

    def __post_init__(self) -> None:
        """Normalise the base URL once so every path join is a plain concatenation."""
        self.base_url = self.base_url.rstrip("/")
        if self.token_store is None:
            self.token_store = default_token_store_path()
        self.token_store = os.path.expanduser(self.token_store)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ConnectionSettings:
        """Build settings from a tap/target/CLI config mapping (unknown keys are ignored)."""

        def pick(name: str, default: Any = None) -> Any:
            value = config.get(name)
            return default if value is None or value == "" else value

        return cls(
            base_url=str(pick("base_url", DEFAULT_BASE_URL)),
            client_id=pick("client_id"),
            client_secret=pick("client_secret"),
            username=pick("username"),
            access_token=pick("access_token"),
            refresh_token=pick("refresh_token"),
            token_store=pick("token_store"),
            entity=pick("entity"),
            max_concurrency=int(pick("max_concurrency", DEFAULT_MAX_CONCURRENCY)),
            max_retries=int(pick("max_retries", DEFAULT_MAX_RETRIES)),
            timeout=float(pick("timeout", DEFAULT_TIMEOUT)),
            max_retry_wait=float(pick("max_retry_wait", 300.0)),
            spec_path=as_list(config.get("spec_path")),
            user_agent=str(pick("user_agent", f"intacct-singer/{__version__}")),
        )

    def oauth_url(self, name: str) -> str:
        """OAuth endpoints live under the API base URL (`/oauth2/token`, ...)."""
        return f"{self.base_url}/oauth2/{name}"

    @property
    def uses_client_credentials(self) -> bool:
        """Client credentials need a Web Services user in `username` (user@company)."""
        return bool(self.client_id and self.client_secret and self.username)


SETTING_HELP: dict[str, str] = {
    "base_url": (
        "Intacct REST API base URL. Point it at the emulator "
        "(http://127.0.0.1:8000/ia/api/v1) for offline work. Plain http:// is refused "
        "except to loopback."
    ),
    "client_id": "Client ID of your Sage developer application (Web Services sender).",
    "client_secret": "Client secret of your Sage developer application.",
    "username": (
        "Client-credentials grant: Web Services user as `user@company`, or "
        "`user@company|entity` for an entity-level token. Leave empty to use tokens from "
        "`intacct login` (authorization code with offline_access)."
    ),
    "access_token": ("Optional access token seeding the token store (the store's newer one wins)."),
    "refresh_token": (
        "Optional refresh token seeding the token store (the store's newer one wins)."
    ),
    "token_store": (
        "Path of the JSON token store shared by tap, target and CLI under one lock "
        "(default: the user's config dir, e.g. ~/.config/intacct/tokens.json). Created "
        "0600."
    ),
    "entity": ("Entity (location) ID sent as X-IA-API-Param-Entity; empty = top level."),
    "max_concurrency": ("Requests in flight per process (Intacct enforces concurrency per tier)."),
    "max_retries": "Attempts per request on 429, 5xx and dropped connections.",
    "timeout": "Per-request timeout in seconds.",
    "max_retry_wait": "Longest single wait (seconds) honoured from a Retry-After header.",
    "spec_path": (
        "Extra OpenAPI files or folders (newer downloads from Sage's developer portal); "
        "for the same operationId the later file wins over the embedded spec."
    ),
    "user_agent": "User-Agent header sent to Intacct.",
}
"""What each shared setting means: the plugins' settings schema and the `intacct` CLI's
options both read these, so the text exists once."""


@cache
def shared_settings_schema() -> th.PropertiesList:
    """The connection settings as a singer-sdk schema, appended to by the tap and the target.

    Built on first use so that importing this module (every CLI command does) does not pay for
    importing singer_sdk, which is most of the CLI's start-up time.
    """
    from singer_sdk import typing as th

    return th.PropertiesList(
        th.Property(
            "base_url",
            th.StringType,
            default=DEFAULT_BASE_URL,
            description=(SETTING_HELP["base_url"]),
        ),
        th.Property(
            "client_id",
            th.StringType,
            description=SETTING_HELP["client_id"],
        ),
        th.Property(
            "client_secret",
            th.StringType,
            secret=True,
            description=SETTING_HELP["client_secret"],
        ),
        th.Property(
            "username",
            th.StringType,
            description=(SETTING_HELP["username"]),
        ),
        th.Property(
            "access_token",
            th.StringType,
            secret=True,
            description=(SETTING_HELP["access_token"]),
        ),
        th.Property(
            "refresh_token",
            th.StringType,
            secret=True,
            description=(SETTING_HELP["refresh_token"]),
        ),
        th.Property(
            "token_store",
            th.StringType,
            description=(SETTING_HELP["token_store"]),
        ),
        th.Property(
            "entity",
            th.StringType,
            description=SETTING_HELP["entity"],
        ),
        th.Property(
            "max_concurrency",
            th.IntegerType,
            default=DEFAULT_MAX_CONCURRENCY,
            description=SETTING_HELP["max_concurrency"],
        ),
        th.Property(
            "max_retries",
            th.IntegerType,
            default=DEFAULT_MAX_RETRIES,
            description=SETTING_HELP["max_retries"],
        ),
        th.Property(
            "timeout",
            th.NumberType,
            default=DEFAULT_TIMEOUT,
            description=SETTING_HELP["timeout"],
        ),
        th.Property(
            "max_retry_wait",
            th.NumberType,
            default=300.0,
            description=SETTING_HELP["max_retry_wait"],
        ),
        th.Property(
            "spec_path",
            th.ArrayType(th.StringType),
            description=(SETTING_HELP["spec_path"]),
        ),
        th.Property(
            "user_agent",
            th.StringType,
            description=SETTING_HELP["user_agent"],
        ),
    )


def __getattr__(name: str) -> Any:
    """`SHARED_SETTINGS` stays importable by name while being built lazily."""
    if name == "SHARED_SETTINGS":
        return shared_settings_schema()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
