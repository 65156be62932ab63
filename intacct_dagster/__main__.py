"""``python -m intacct_dagster``: see ``intacct_dagster.cli``."""

import sys

from intacct_dagster.cli import main

sys.exit(main())
