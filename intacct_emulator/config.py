"""Start-up configuration of the emulator, shared by the CLI, `create_app` and the test helpers.

One plain dataclass rather than CLI-parsed globals, so that the console script, the in-thread
test server and the subprocess helper all build the same server from the same description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from intacct_emulator.company import Company

API_PREFIX = "/ia/api/v1"
"""Where the emulated REST API lives; a client's `base_url` is `http://HOST:PORT` + this."""

CONTROL_PREFIX = "/_emulator"
"""Control endpoints live outside the API prefix so no client can hit them by accident."""

DEFAULT_CLIENT_ID = "demo-client"
DEFAULT_CLIENT_SECRET = "demo-secret"  # noqa: S105 - public demo credential, printed at start
DEFAULT_USERNAME = "admin@DEMO"
DEFAULT_TOKEN_LIFETIME = 43200.0
"""Seconds; Intacct answers `expires_in: 43200` (12 h) in recorded traffic."""

DEFAULT_REFRESH_TOKEN_LIFETIME = 183 * 86400.0
"""About six months, the only figure public sources give for refresh tokens."""


@dataclass(frozen=True)
class ClientConfig:
    """One registered OAuth client: id, secret and the Web Services user it may act as.

    `username` is `user@COMPANY`; Intacct's client-credentials grant requires the caller to name
    exactly this user (optionally `|ENTITY`), and the auth-code flow consents as this user.
    """

    client_id: str
    client_secret: str = field(repr=False)
    username: str

    @classmethod
    def parse(cls, spec: str) -> ClientConfig:
        """Parse the CLI form `ID:SECRET:USER` (the user part may itself contain `|entity`)."""
        parts = spec.split(":", 2)
        if len(parts) != 3 or not all(parts) or "@" not in parts[2]:
            raise ValueError("expected CLIENT_ID:CLIENT_SECRET:user@COMPANY")
        return cls(client_id=parts[0], client_secret=parts[1], username=parts[2])


def default_clients() -> list[ClientConfig]:
    """The demo client every emulator knows, documented in the README."""
    return [ClientConfig(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_USERNAME)]


@dataclass
class EmulatorConfig:
    """Everything needed to build one emulator instance.

    `faults` holds the start-up fault knobs (same names as `POST /_emulator/faults`); a reset
    returns the knobs to these values. `company` lets a caller hand in a ready data layer
    (tests that want to poke it directly); otherwise one is built from `db` and the registry.
    """

    db: str = ":memory:"
    seed_records: int = 0
    random_seed: int = 0
    token_lifetime: float = DEFAULT_TOKEN_LIFETIME
    refresh_token_lifetime: float = DEFAULT_REFRESH_TOKEN_LIFETIME
    clients: list[ClientConfig] = field(default_factory=default_clients)
    faults: dict[str, Any] = field(default_factory=dict)
    spec_paths: list[str] = field(default_factory=list)
    company: Company | None = field(default=None, repr=False)
