"""Where plain ``http://`` may go: the one rule the client and the OAuth calls both apply.

Tokens and client secrets travel in headers and form bodies, so anything but ``https://`` is
refused unless the server is on this machine (the emulator). "On this machine" means loopback:
``localhost`` and any ``*.localhost`` name (RFC 6761 reserves them for loopback), every
127.0.0.0/8 address in any form the C library accepts (``127.1`` is 127.0.0.1), and ``::1``.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from intacct_api.errors import ConfigError

__all__ = ["is_loopback_host", "require_secure_url"]


def is_loopback_host(host: str | None) -> bool:
    """True when ``host`` can only be this machine (see the module docstring)."""
    if not host:
        return False
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost") or name == "localhost.localdomain":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        pass
    try:  # short and legacy IPv4 forms (127.1, 0x7f.1) as the resolver reads them
        return ipaddress.IPv4Address(socket.inet_aton(name)).is_loopback
    except (OSError, ValueError):
        return False


def require_secure_url(url: str, what: str = "credentials") -> None:
    """Refuse to send ``what`` to ``url`` over plain http unless the host is loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        return
    raise ConfigError(
        f"refusing to send {what} to {parts.scheme}://{parts.netloc}: use https (plain http is "
        "allowed only to loopback: localhost, *.localhost, 127.0.0.0/8, ::1)"
    )
