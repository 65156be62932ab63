"""Singer target for Sage Intacct (REST API v1)."""
