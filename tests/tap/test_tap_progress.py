"""Progress lines: at most one per interval per stream, with records, pages and the rate."""

from __future__ import annotations

from tap_intacct.progress import Progress


def test_progress_logs_once_per_interval() -> None:
    now = [0.0]
    lines: list[str] = []
    progress = Progress(lambda fmt, *args: lines.append(fmt % args), "s", 10.0, lambda: now[0])
    assert not progress.tick(4000, 1)  # a short sync logs nothing
    now[0] = 9.9
    assert not progress.tick(8000, 2)
    now[0] = 10.0
    assert progress.tick(12000, 3)
    now[0] = 15.0
    assert not progress.tick(16000, 4)  # interval counts from the last line
    now[0] = 20.0
    assert progress.tick(20000, 5)
    assert lines == [
        "s: 12000 records, 3 pages so far (1200 records/s)",
        "s: 20000 records, 5 pages so far (1000 records/s)",
    ]
