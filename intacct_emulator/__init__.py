"""A local HTTP server that behaves like Sage Intacct's REST API v1, driven by the spec."""
