"""Test helpers shared by several test modules (loopback servers, fixtures' building blocks)."""
