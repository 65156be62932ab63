"""Reliability and security suite (issue 8): the real binaries against injected faults."""
