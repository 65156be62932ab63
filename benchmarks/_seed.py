"""Build a benchmark database with the emulator's own bulk seeding path, before it serves.

Kept apart from `common.py` so that importing the benchmark helpers does not import the
emulator (the bare loops and the result printing never need it).
"""

from __future__ import annotations


def seed_object(db: str, object_name: str, n: int, *, random_seed: int = 7) -> None:
    """Write ``n`` generated records of one object into the SQLite file ``db``.

    Uses `Company.seed_object`, the bulk path the emulator offers for benchmarks (one
    transaction, `executemany`), so the rows are exactly what the server would have generated.
    """
    from intacct_api.spec import default_registry
    from intacct_emulator.company import Company

    company = Company(default_registry(), db=db)
    try:
        company.seed_object(object_name, n, random_seed)
    finally:
        company.close()
