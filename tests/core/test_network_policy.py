"""Plain http:// is allowed to loopback only, and the client and the OAuth calls agree on what
loopback is (issue 14: `api.localhost` passed one and failed the other; `127.1` was refused)."""

from __future__ import annotations

import pytest

from intacct_api.client import IntacctClient
from intacct_api.errors import ConfigError
from intacct_api.network_policy import is_loopback_host, require_secure_url
from intacct_api.settings import ConnectionSettings

LOOPBACK = ["localhost", "api.localhost", "127.0.0.1", "127.1", "127.9.8.7", "[::1]"]
REMOTE = ["example.com", "localhost.example.com", "10.0.0.1", "192.168.1.4", "[2001:db8::1]"]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback_hosts_are_allowed_plain_http_by_client_and_auth(host: str) -> None:
    assert is_loopback_host(host)
    url = f"http://{host}:8000/ia/api/v1"
    require_secure_url(url + "/oauth2/token")
    IntacctClient(ConnectionSettings(base_url=url)).close()


@pytest.mark.parametrize("host", REMOTE)
def test_remote_hosts_need_https_in_client_and_auth(host: str) -> None:
    assert not is_loopback_host(host)
    url = f"http://{host}/ia/api/v1"
    with pytest.raises(ConfigError, match="loopback"):
        require_secure_url(url + "/oauth2/token")
    with pytest.raises(ConfigError, match="loopback"):
        IntacctClient(ConnectionSettings(base_url=url))
    require_secure_url(f"https://{host}/ia/api/v1/oauth2/token")  # https is fine anywhere
