"""Singer tap for Sage Intacct (REST API v1)."""
