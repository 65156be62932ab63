"""The `intacct` operator CLI (typer); command groups register themselves in `app.py`."""
