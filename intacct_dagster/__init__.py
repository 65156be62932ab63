"""Fleet orchestration on Dagster: many Intacct companies in parallel, state in PostgreSQL.

Optional (``pip install 'intacct-singer[orchestration]'``). ``fleet`` reads the fleet file,
``runner`` runs one company's stream group as a ``meltano el`` run whose Singer state lives in
Meltano's state backend (its system database in the fleet's PostgreSQL), ``fleet_db`` keeps
the fleet's attempts table and the per-company locks there, ``definitions`` turns a fleet into
Dagster assets/jobs/schedules and ``cli`` runs a fleet without a Dagster daemon. README
"Fleets of companies on Dagster" has the picture.
"""
