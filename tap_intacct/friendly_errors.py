"""Configuration, login and connection errors as two lines a person can act on.

Why: a wrong client secret or missing credentials used to end the run with an 80-line
traceback (singer-sdk logs every uncaught exception with its stack) before the one clear
line. These errors are not bugs: the message already says what is wrong, so the tap logs it,
adds the setting to change and how (the settings' Meltano environment variables included), and
exits 1. The traceback is still logged, at DEBUG (``--log-level debug`` in Meltano).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from intacct_api.errors import (
    ConfigError,
    InsecureTokenStoreError,
    IntacctError,
    LoginRequiredError,
    TransportError,
)

__all__ = ["PEOPLE_ERRORS", "fix_for", "people_errors"]

PEOPLE_ERRORS: tuple[type[IntacctError], ...] = (
    ConfigError,
    LoginRequiredError,
    InsecureTokenStoreError,
    TransportError,
)
_MAX_MESSAGE = 300


def fix_for(exc: IntacctError, config: Mapping[str, Any], env_prefix: str) -> str:
    """The one-line fix for an error of :data:`PEOPLE_ERRORS`."""
    base_url = config.get("base_url") or "https://api.intacct.com/ia/api/v1"
    if isinstance(exc, LoginRequiredError):
        return (
            "set client_id, client_secret and username for the client-credentials grant "
            f"({env_prefix}_CLIENT_ID, {env_prefix}_CLIENT_SECRET, {env_prefix}_USERNAME), "
            "or run `intacct login` once for the token store in `token_store`"
        )
    if isinstance(exc, InsecureTokenStoreError):
        return "make the token store file readable by its owner only (chmod 600 <file>)"
    if isinstance(exc, TransportError):
        return (
            f"check base_url ({env_prefix}_BASE_URL, now {base_url}) and that this machine "
            "can reach it (network, proxy, IP allow-list)"
        )
    text = str(exc)
    if "client_id" in text or "client_secret" in text:
        return (
            f"set client_id and client_secret ({env_prefix}_CLIENT_ID, "
            f"{env_prefix}_CLIENT_SECRET) to your Sage application's credentials"
        )
    return "correct the setting named above (`meltano config <plugin> list` shows them)"


@contextlib.contextmanager
def people_errors(
    logger: logging.Logger, config: Mapping[str, Any], env_prefix: str
) -> Iterator[None]:
    """Turn :data:`PEOPLE_ERRORS` into two ERROR lines and exit 1 (traceback at DEBUG)."""
    try:
        yield
    except PEOPLE_ERRORS as exc:
        message = " ".join(str(exc).split())
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        logger.error("%s", message)
        logger.error("fix: %s", fix_for(exc, config, env_prefix))
        logger.debug("details of the error above", exc_info=True)
        raise SystemExit(1) from None
