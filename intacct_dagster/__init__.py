"""Fleet orchestration on Dagster: many Intacct companies in parallel, state in PostgreSQL.

Optional (``pip install 'intacct-singer[orchestration]'``). ``fleet`` reads the fleet file,
``state_store`` keeps every company's Singer state in PostgreSQL, ``runner`` runs one
company's stream group, ``definitions`` turns a fleet into Dagster assets/jobs/schedules and
``cli`` runs a fleet without a Dagster daemon. README "Fleets on Dagster" has the picture.
"""
