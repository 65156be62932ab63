"""Shared core of the Sage Intacct connector: spec registry, auth, HTTP client, pager, writer."""

__version__ = "0.1.0"
